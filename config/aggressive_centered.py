# Center everywhere: every placement at once.
include("experiment_base.py")
out_dir = "out/aggressive_centered"
center_embeddings = True
center_qk = True
center_v = True
center_attn_out = True
center_residual = True
center_mlp = True

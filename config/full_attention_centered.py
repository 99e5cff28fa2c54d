# Center queries, keys, values and the attention output before its projection.
include("experiment_base.py")
out_dir = "out/full_attention_centered"
center_qk = True
center_v = True
center_attn_out = True

# Center the MLP hidden activation after the GELU.
include("experiment_base.py")
out_dir = "out/mlp_centered"
center_mlp = True

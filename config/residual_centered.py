# Center the residual stream after every block.
include("experiment_base.py")
out_dir = "out/residual_centered"
center_residual = True

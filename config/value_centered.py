# Center the attention values.
include("experiment_base.py")
out_dir = "out/value_centered"
center_v = True

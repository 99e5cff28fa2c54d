# Reference run: no centering.
include("experiment_base.py")
out_dir = "out/baseline"

# Center queries and keys (keys alone are a no-op: see model_advanced_centering.py).
include("experiment_base.py")
out_dir = "out/qk_centered"
center_qk = True

# Center queries, keys and values.
include("experiment_base.py")
out_dir = "out/qk_value_centered"
center_qk = True
center_v = True

# The recommended variant: center the input embeddings (token + position), adaptive mode.
include("experiment_base.py")
out_dir = "out/embeddings_centered"
center_embeddings = True
centering_mode = "adaptive"

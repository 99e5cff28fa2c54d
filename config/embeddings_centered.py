# Center the input embeddings (token + position), adaptive mode: the prior report's recommended
# variant. What it measured here, against a baseline, is in RESULTS.md.
include("experiment_base.py")
out_dir = "out/embeddings_centered"
center_embeddings = True
centering_mode = "adaptive"

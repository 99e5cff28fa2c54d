# Overlay for one GPU: a 384-wide, 6-layer model with a 256-character context (nanoGPT's
# Shakespeare GPU shape). Put it after the variant: config/<variant>.py config/gpu.py
device = "cuda"
compile = True
block_size = 256
batch_size = 64
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
learning_rate = 1e-3  # nanoGPT's rate for this shape, not tuned here (--tune=True tunes it)
eval_windows = 1000

# The character-level Shakespeare GPT shrunk to train on a laptop or a 2-core CPU in a few minutes
# (nanoGPT's documented CPU run: reaches a val loss of about 1.88 on tiny Shakespeare).
include("train_shakespeare_char.py")
out_dir = "out/shakespeare-char-cpu"
device = "cpu"
compile = False
eval_interval = 250
eval_windows = 200
log_interval = 50
block_size = 64
batch_size = 12
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
max_iters = 2000
lr_decay_iters = 2000

# The protocol every centering variant shares (config/<variant>.py includes this file and sets
# only its centering). Character-level Shakespeare, 1000 iterations, nanoGPT's CPU-sized model:
# a run takes about a minute or two on a 2-core CPU.
#
# Scaling up on a GPU: add config/gpu.py after the variant (a 384-wide model), e.g.
#   python train_advanced_centered.py config/embeddings_centered.py config/gpu.py
# and for the 768-wide GPT-2-small shape on GPT-2 BPE tokens (data/shakespeare/prepare.py):
#   ... config/gpu.py --dataset=shakespeare --n_layer=12 --n_head=12 --n_embd=768 --block_size=1024 --batch_size=16 --vocab_multiple=64
dataset = "shakespeare_char"
out_dir = "out/experiment"
seed = 1337

block_size = 64
batch_size = 12
gradient_accumulation_steps = 1
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

max_iters = 1000
learning_rate = 4e-3  # the baseline's tuned rate at this shape (RESULTS.md, "All six placements, both modes"); the first edition used 1e-3
lr_decay_iters = 1000
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 100
eval_windows = 400  # fixed validation windows: the same in every run, at every eval
train_eval_windows = 100  # the train-loss figure only: a quarter of the cost of evaluating like val
log_interval = 50
always_save_checkpoint = True

device = "auto"
compile = False

# centering: all off here; each variant file turns on its placements
centering_mode = "adaptive"
centering_momentum = 0.1

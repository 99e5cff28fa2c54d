# A baby GPT on character-level Shakespeare, sized for one GPU (a few minutes on an A100).
# Prepare the data first: python data/shakespeare_char/prepare.py
out_dir = "out/shakespeare-char"
eval_interval = 250  # the model overfits: evaluate often, keep the best checkpoint
eval_windows = 500
log_interval = 10
always_save_checkpoint = False

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # characters of context

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # small models tolerate a larger learning rate
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # few tokens per iteration: a slightly longer second-moment memory
warmup_iters = 100
compile = True

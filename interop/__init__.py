"""Our runs in other tools, and theirs in ours: upstream nanoGPT's runs imported (nanogpt.py), a
Hugging Face GPT-2 model and tokenizer exported (hugging_face.py). Upstream's own sample.py and
train.py read our plain checkpoints as they are (training/checkpoint.py writes its keys)."""

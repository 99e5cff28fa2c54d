"""
Turn a run of upstream nanoGPT (its ckpt.pt, and the dataset folder it trained on) into a run of
this project:

    python scripts/import_nanogpt.py --in_dir=../nanoGPT/out-shakespeare-char \
        --data_dir=../nanoGPT/data/shakespeare_char --out_dir=out/nanogpt-char
    python sample.py --out_dir=out/nanogpt-char --start="ROMEO:"
    python train.py --out_dir=out/nanogpt-char --init_from=resume --max_iters=6000   # train on

What carries over: the weights (upstream's GPT is ours without the extension sites; the
"_orig_mod." prefix of a compiled model and the causal-mask buffers of PyTorch before 2.0 are
dropped), the model arguments, the AdamW state, the iteration count, and the settings both
projects share (learning rate and schedule, batch, dropout, ...; ours at their defaults for the
rest, e.g. seed 1337). The vocabulary comes from --data_dir's meta.pkl (characters); without one it
is GPT-2 BPE, as upstream's sample.py assumes. The token files there (train.bin, val.bin) become
a dataset of ours at --dataset_dir, default data/<upstream dataset>_nanogpt: a name of its own,
as both projects call their character Shakespeare shakespeare_char with different texts and
vocabularies. train.bin stays the training split; val.bin is cut in two halves, validation and
test. Without token files the import is for sampling only.

What does not: upstream keeps no batch sampler or random state, so our train.py starts both afresh
from the seed, and says so in one line; and upstream's best_val_loss is an estimate on random
windows, not our fixed validation windows, so the import starts with none (inf) and the first
evaluation of a resumed run sets it. The run folder gets ckpt.pt and best.pt (the same weights
until a resumed run does better).

--out_dir must not hold a run (ckpt.pt, best.pt or metrics.jsonl) unless --overwrite=True, which
replaces it; the upstream run's own folder is always refused.
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)

from configurator import run_command  # noqa: E402
from interop.nanogpt import ImportConfig, import_run  # noqa: E402


def main(argv):
    return run_command(ImportConfig, argv, import_run,
                       "import_nanogpt.py --in_dir=FOLDER --data_dir=FOLDER --out_dir=FOLDER "
                       "[--dataset_dir=FOLDER] [--overwrite=True]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""
Process settings that make CPU training faster without changing any result.

PyTorch's CPU tensors come from glibc malloc. By default glibc serves large blocks (from 128 KiB,
a threshold that adapts only up to 32 MiB) with fresh mmap()s and gives freed memory at the top of
the heap back to the kernel, so a training step that allocates and frees the same activations
every iteration page-faults them in (and the kernel zeroes them) again each time: thousands of
faults per step for nanoGPT's CPU model, and 150,000 per step (most of the step time) for a GPT-2
vocabulary's 150 MB of logits (BENCHMARKS.md). Keeping freed memory in the process makes every
later step reuse it; the cost is that the resident size stays at its peak instead of shrinking
between steps.
"""

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks from 1 GiB on still get their own mapping
TRIM_THRESHOLD = (1 << 31) - 1  # give memory back to the kernel only beyond 2 GiB of free heap top

_applied = None


def retain_freed_memory():
    """Tell glibc's malloc to keep freed memory for reuse (see the module docstring). Returns True
    when the settings took effect; False where there is no glibc (macOS, musl): nothing changes."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                    bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                _applied = False
    return _applied

"""
Where a run or a benchmark ran, said one way everywhere: the processor (with the vector units
that change float rounding, so two records of one seed can tell why they differ), the cores, the
torch threads, the GPU and torch's version.
"""

import os


def cpu_model():
    """The processor's model name and the widest vector unit that changes float rounding (runs on
    two CPUs of one seed agree for a few hundred steps, then drift apart), e.g. 'AMD EPYC (avx512)';
    None where /proc/cpuinfo is not there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    units = [name for name, flag in (("amx", "amx_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")) if flag in flags]
    return fields.get("model name", "unknown") + (f" ({units[0]})" if units else "")


def machine_description():
    """One line for a benchmark's output: CPU, cores, torch threads, GPU, torch version."""
    import platform

    import torch
    cpu = cpu_model() or platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {gpu}, torch {torch.__version__}"

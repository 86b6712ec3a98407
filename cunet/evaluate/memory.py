"""Memory figures, defined once: what `load_peak_mb`, `run_peak_mb` and `device_peak_mb` mean and how each is read.

Three numbers answer three questions, and a row that mixes them (a "peak" that is sometimes the lifetime peak,
sometimes the peak after warm-up, host memory on GPU rows) compares nothing:

- `load_peak_mb`: how much memory does it take to get the first answer? The process's peak resident set from its
  start until the first inference returned: interpreter and imports, reading the model, graph optimisation or
  compilation, TensorRT engine deserialisation, the first run's allocations.
- `run_peak_mb`: how much does it hold while serving? The peak resident set during the timed runs only: Linux's
  high-water mark is reset (`/proc/self/clear_refs`) after the warm-up and read after the last timed run. Where the
  mark cannot be reset it is `None` (the lifetime peak would be `load_peak_mb` or more, not a run figure).
- `device_peak_mb`: GPU memory of this process (NVML's per-process accounting, sampled after the first inference
  and after the timed runs, the larger kept). `None` on CPU rows and wherever the process's own usage cannot be
  attributed (no NVML, a container whose PIDs NVML does not show, no CUDA-to-NVML device mapping) — never 0, which
  would read as "uses no device memory".

MB are 10^6 bytes. `DEFINITIONS` travels in every JSON that reports these figures, so a number is never separated
from its meaning. Processes are shared by everything they loaded before: bench profiles each artifact in a fresh
child process, so its load peak is that artifact's alone.
"""

from __future__ import annotations

__all__ = ["DEFINITIONS", "peak_rss_mb", "reset_peak_rss", "device_process_mb"]

#: The meaning of each memory key, copied into bench.json and the profile report.
DEFINITIONS = {
    "load_peak_mb": "peak resident memory (VmHWM, MB = 1e6 bytes) of the process from its start until the first "
                    "inference returned: imports, model load, compile/deserialise and the first run",
    "run_peak_mb": "peak resident memory during the timed runs: VmHWM reset after the warm-up, read after the last "
                   "timed run; null where the high-water mark cannot be reset",
    "device_peak_mb": "GPU memory of this process (NVML per-process accounting, the larger of the samples after "
                      "the first inference and after the timed runs); null on CPU rows and where it cannot be "
                      "attributed to this process, never 0",
    "peak_mb": "bench rows: kept for compatibility, equal to run_peak_mb",
}


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """The high-water mark of this process's resident set in MB: VmHWM, or getrusage's ru_maxrss elsewhere."""
    kb = _proc_status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb * 1024 / 1e6


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0 accepts "5" in clear_refs); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:  # a kernel control file, not an output
            f.write("5")
        return True
    except OSError:
        return False


def device_process_mb(index: int) -> float | None:
    """This process's memory on CUDA device `index` in MB (`cunet.runtime.cuda.process_memory`), None where it
    cannot be attributed."""
    from cunet.runtime import cuda

    used = cuda.process_memory(index)
    return None if used is None else used / 1e6

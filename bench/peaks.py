"""The machine's own limits, measured in the same run as a benchmark, and how its figures are summarised.

A shared machine's speed drifts from day to day (and from minute to minute), so a tokens/s figure means little
alone. Each bench script prints, beside its results, what this machine could do at that moment:
  matmul peak     GFLOP/s of square torch.mm products in fp32 and bf16, the best of short windows (one long average
                  swings 2-3x with the neighbours' load; the best window is the machine's own speed)
  copy bandwidth  GB/s of a 512 MiB tensor copy (bytes read + bytes written): batch-1 decoding reads every weight
                  once per token, so bandwidth / weight bytes is its speed limit
and every comparison is run several times, interleaved, and reported as its median and range.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minisft.memory import matmul_rate  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peaks(seconds: float = 1.0) -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s}: memory.matmul_rate's best-of-ten-windows probe on this CPU."""
    return {dt: matmul_rate(torch.device("cpu"), dt, seconds) / 1e9 for dt in ("fp32", "bf16")}


def copy_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """GB/s moved by copying a large tensor (bytes read + bytes written), best of `repeats`."""
    src = torch.empty(mib * 2**20 // 4).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best / 1e9


def machine_line(peaks: dict[str, float], bandwidth: float) -> str:
    return (f"this run's machine: matmul peak fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
            f"copy bandwidth {bandwidth:.1f} GB/s; torch {torch.__version__}, {torch.get_num_threads()} threads")


def spread(values: list[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    """'median [min-max]' of several runs (one value: just that value)."""
    if len(values) == 1:
        return fmt.format(values[0]) + unit
    return (fmt.format(statistics.median(values)) + unit + " [" + fmt.format(min(values)) + "-"
            + fmt.format(max(values)) + "]")

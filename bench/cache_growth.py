"""Does memory grow over a bf16 run on CPU? python bench/cache_growth.py [--steps 60] [--shape 124m]

PyTorch's bf16 matmuls on CPU (oneDNN) compile and cache a kernel per matrix shape. SFT batches change length
almost every step, so the caches keep growing unless capped (minisft/__init__.py caps them at 16). This trains
--steps steps of batch 8, each batch a new set of examples (and so, mostly, a new length), once with the caps
and once with PyTorch's defaults (1,024), each in its own process, and prints the peak resident memory and time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def worker(shape: str, steps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import torch
    from train_speed import rss_mib, shape_config, synthetic_examples

    from minisft import data as D
    from minisft import precision as P
    from minisft import training
    from minisft.model import GPT
    from minisft.objective import SFTObjective
    from minisft.optimizer import make_optimizer

    config = shape_config(shape, 0.1)
    torch.manual_seed(0)
    model = GPT(config).train()
    objective = SFTObjective(model)
    opt = make_optimizer(model, 1e-4, 0.1, torch.device("cpu"))
    precision = P.pick_precision(torch.device("cpu"), "bf16")
    examples = synthetic_examples(8 * steps, config.vocab_size, seed=0)
    start, peaks = time.perf_counter(), []
    for k in range(steps):
        batch = D.collate(examples[8 * k:8 * k + 8], 0)
        training.train_step(objective, [batch], opt, precision, 1e-4, 1.0)
        peaks.append(rss_mib("VmHWM"))
    return {"seconds": time.perf_counter() - start, "peaks": peaks, "caps": [os.environ.get(c) for c in CAPS]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--shape", default="124m", choices=("test", "tiny", "124m"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.shape, args.steps)))
        return 0
    print(f"{args.shape}, bf16 autocast, batch 8, {args.steps} steps of new batches: peak RSS MiB after steps "
          f"1 / {args.steps // 2} / {args.steps}, and the time")
    for name, value in (("capped at 16 (minisft's default)", "16"), ("PyTorch's default (1024)", "1024")):
        env = {**os.environ, **{c: value for c in CAPS}}
        out = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(args.steps), "--shape", args.shape],
                             env=env, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        peaks = r["peaks"]
        print(f"  {name:34} {peaks[0]:6.0f} {peaks[len(peaks) // 2 - 1]:6.0f} {peaks[-1]:6.0f} MiB  "
              f"{r['seconds']:5.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

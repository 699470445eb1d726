"""Which GPT-2 size fits this machine, and how: peak memory and step time of every official shape, measured
beside what the memory plan (minisft/memory.py) predicted for it.

    python bench/sizes.py                                   # 4 shapes x 4 methods, ~30 min on 2 cores
    python bench/sizes.py --shapes gpt2 --rows "full fp32,LoRA r16"     # a quick look
    python bench/sizes.py --json runs/sizes.json            # also keep the numbers

For each shape a random-weight checkpoint is written once to a temp folder; then each row runs in its own fresh
process, which loads it the way train.py does (load_model, the LoRA base read straight into bf16), trains
--steps steps of batch 8 x 128 tokens (AdamW, clipping, the loop's own train_step) and reports its peak
resident memory (ru_maxrss: weights, gradients, optimizer state, activations, PyTorch and the allocator's slack,
everything) and its median step time after the first. The plan is worked out in the same process, with its own
one-second matmul probe, so "plan time" and "measured" share the machine's speed of that minute.
A row the plan says cannot fit in the machine's free memory is not run (that is what the plan is for).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # --report imports minisft here; the measurements run in child processes

ROWS = {  # name -> (dtype, LoRA rank, activation checkpointing)
    "full fp32": ("fp32", 0, False),
    "full bf16": ("bf16", 0, False),
    "full bf16 + ckpt": ("bf16", 0, True),
    "LoRA r16": ("bf16", 16, False),
    "LoRA r16 + ckpt": ("bf16", 16, True),
}
SHAPES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")

MAKE = """
import sys, torch
from minisft.model import GPT, official_config
from minisft.pretrained import save_model
torch.manual_seed(0)
save_model(GPT(official_config(sys.argv[1])), sys.argv[2])
"""

# The child never forks from a process that held a model: ru_maxrss is this row's own peak.
MEASURE = """
import json, resource, statistics, sys, time, torch
from minisft import memory
from minisft.config import TrainConfig
from minisft.lora import TARGETS, add_lora
from minisft.model import official_config
from minisft.objective import SFTObjective
from minisft.optimizer import make_optimizer
from minisft.precision import pick_precision
from minisft.pretrained import load_model
from minisft.training import train_step
shape, folder, dtype, rank, ckpt, batch, seq, steps = sys.argv[1:9]
rank, ckpt, batch, seq, steps = int(rank), ckpt == "1", int(batch), int(seq), int(steps)
cpu = torch.device("cpu")
config = official_config(shape)
plan = memory.plan(config, batch, seq, dtype, rank, "attn+mlp", "bf16" if rank else "fp32", ckpt)
rate = memory.matmul_rate(cpu, dtype)
model = load_model(folder, frozen=TARGETS["attn+mlp"] if rank else ())
if rank:  # train.py's defaults for the rest: --lora-alpha, --lora-dropout
    add_lora(model, rank, TrainConfig().lora_alpha, TrainConfig().lora_dropout, "attn+mlp", torch.bfloat16)
model.activation_checkpointing = ckpt
model.train()
optimizer = make_optimizer(model, 1e-4, 0.1, cpu)
g = torch.Generator().manual_seed(0)
ids = torch.randint(0, config.vocab_size, (batch, seq), generator=g)
targets = torch.cat([ids[:, 1:], ids[:, :1]], 1)
targets[:, : seq // 4] = -100  # a prompt that carries no loss
micro = {"input_ids": ids, "targets": targets, "weights": torch.ones(batch)}
times = []
for _ in range(steps):
    start = time.perf_counter()
    train_step(SFTObjective(model), [micro], optimizer, pick_precision(cpu, dtype), 1e-4, 1.0)
    times.append(time.perf_counter() - start)
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "plan": plan.total,
                  "step_s": statistics.median(times[1:]), "plan_s": memory.step_seconds(plan, rate, dtype),
                  "rate": rate, "parts": [plan.weights, plan.gradients, plan.optimizer, plan.activations]}))
"""


def free_bytes() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return float(info["MemAvailable"].split()[0]) * 1024


def planned(shape: str, dtype: str, rank: int, ckpt: bool, batch: int, seq: int) -> float:
    code = ("import sys; from minisft import memory; from minisft.model import official_config; "
            f"print(memory.plan(official_config({shape!r}), {batch}, {seq}, {dtype!r}, {rank}, 'attn+mlp', "
            f"{'bf16' if rank else 'fp32'!r}, {ckpt}).total)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                check=True).stdout)


def report(rows: list[dict], batch: int, seq: int) -> str:
    """The markdown table of saved rows, each beside the current memory plan and time estimate."""
    from minisft import memory
    from minisft.model import official_config

    gib, lines = 1024**3, [HEADER, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dtype, rank, ckpt = ROWS[r["row"]]
        p = memory.plan(official_config(r["shape"]), batch, seq, dtype, rank, "attn+mlp", "bf16" if rank else "fp32",
                        ckpt)
        if not r["fits"]:
            lines.append(f"| {r['shape']} | {r['row']} | {p.total / gib:.1f} | does not fit | | | | |")
            continue
        plan_s = memory.step_seconds(p, r["rate"], dtype)
        lines.append(f"| {r['shape']} | {r['row']} | {p.total / gib:.2f} | {r['peak'] / gib:.2f} | "
                     f"{p.total / r['peak']:.2f} | {plan_s:.1f} | {r['step_s']:.1f} | {plan_s / r['step_s']:.2f} |")
    return "\n".join(lines)


HEADER = "| shape | method | plan GiB | peak GiB | plan / peak | plan s/step | s/step | plan / measured |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated official shapes")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="training steps per row (the first is not timed)")
    parser.add_argument("--json", default=None, help="also write every row here")
    parser.add_argument("--report", default=None, help="print the table of a saved --json again, with the plan of "
                        "the code as it is now (the measured peaks, times and matmul rates as saved)")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text()), args.batch, args.seq))
        return 0
    rows = [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {list(ROWS)}")

    gib, results = 1024**3, []
    print(f"batch {args.batch} x {args.seq} tokens, {args.steps} steps per row (median of all but the first); "
          f"free memory {free_bytes() / gib:.1f} GiB\n")
    print("| shape | method | plan GiB | peak GiB | plan / peak | plan s/step | s/step | plan / measured |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as folder:
            made = False
            for row in rows:
                dtype, rank, ckpt = ROWS[row]
                need = planned(shape, dtype, rank, ckpt, args.batch, args.seq)
                if need > free_bytes():
                    print(f"| {shape} | {row} | {need / gib:.1f} | does not fit ({free_bytes() / gib:.0f} GiB free)"
                          " | | | | |", flush=True)
                    results.append({"shape": shape, "row": row, "plan": need, "fits": False})
                    continue
                if not made:  # written once per shape, only if some row runs
                    subprocess.run([sys.executable, "-c", MAKE, shape, folder], cwd=ROOT, check=True)
                    made = True
                out = subprocess.run([sys.executable, "-c", MEASURE, shape, folder, dtype, str(rank),
                                      str(int(ckpt)), str(args.batch), str(args.seq), str(args.steps)],
                                     capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    print(f"| {shape} | {row} | {need / gib:.1f} | failed: {out.stderr.strip()[-200:]!r} | | | | |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results.append({"shape": shape, "row": row, "fits": True, **r})
                print(f"| {shape} | {row} | {r['plan'] / gib:.2f} | {r['peak'] / gib:.2f} | "
                      f"{r['plan'] / r['peak']:.2f} | {r['plan_s']:.1f} | {r['step_s']:.1f} | "
                      f"{r['plan_s'] / r['step_s']:.2f} |", flush=True)
    rates = sorted({f"{r['rate'] / 1e9:.0f}" for r in results if r.get("fits")})
    print(f"\nmatmul probes (GFLOP/s, per row): {', '.join(rates)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

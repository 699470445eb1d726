"""Where a training step's time goes, piece by piece. python bench/step_parts.py [--shape 124m] [--dtype bf16]

The figures the code's comments cite, measured in isolation:
  1. one AdamW update of every parameter: PyTorch's default ("foreach") against the fused kernel that
     optimizer.make_optimizer uses;
  2. a vocabulary-sized tensor made fresh against the same work done in place (why loss.HeadBuffers exists:
     fresh memory costs page faults);
  3. the busiest operators of real training steps (training.train_step), grouped by tensor shape;
  4. where the step's time goes, by kind of operator (matmuls, casts and copies, dropout's random numbers, the
     optimizer, the rest), and the rate the matmuls themselves run at against this run's matmul peak: the most
     MFU the step could reach if everything but its matmuls took no time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from peaks import matmul_peaks  # noqa: E402
from train_speed import SHAPES, adamw_groups, model_flops, shape_config, synthetic_examples  # noqa: E402

from minisft import data as D  # noqa: E402
from minisft import training  # noqa: E402
from minisft.model import GPT  # noqa: E402
from minisft.objective import SFTObjective  # noqa: E402
from minisft.optimizer import make_optimizer  # noqa: E402
from minisft.precision import pick_precision  # noqa: E402


def best_ms(fn, repeats: int = 5) -> float:
    fn()  # warm-up: the first call allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def optimizer_ms(model) -> dict:
    """ms of one AdamW update (random gradients), foreach vs fused, same groups and settings."""
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    out = {}
    for kind in ("foreach", "fused"):
        opt = torch.optim.AdamW(adamw_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                                foreach=kind == "foreach" or None, fused=kind == "fused" or None)
        out[kind] = best_ms(opt.step)
    model.zero_grad(set_to_none=True)
    return out


def fresh_vs_in_place_ms(rows: int, vocab: int, repeats: int = 5) -> dict:
    """Median ms to copy [rows, vocab] float32 logits into NEW memory (every copy kept, so none can reuse the pages
    of the one before) vs to scale them in place (the same pages every time)."""
    logits, kept, fresh, in_place = torch.randn(rows, vocab), [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        kept.append(logits.clone())
        fresh.append(time.perf_counter() - start)
        start = time.perf_counter()
        logits.mul_(1.0)
        in_place.append(time.perf_counter() - start)
    return {"fresh copy": 1000 * sorted(fresh)[repeats // 2], "in place": 1000 * sorted(in_place)[repeats // 2]}


KINDS = {  # operator -> kind, for the step's time shares (anything else is "the rest")
    "aten::mm": "matmuls", "aten::addmm": "matmuls", "aten::bmm": "matmuls", "aten::baddbmm": "matmuls",
    "aten::copy_": "casts and copies", "aten::bernoulli_": "dropout's random numbers",
    "aten::_fused_adamw_": "optimizer", "aten::_foreach_mul_": "optimizer", "aten::_foreach_add_": "optimizer",
}


def profile_steps(model, config, dtype: str, batch: int, steps: int, top: int, peak: float | None = None) -> str:
    examples = synthetic_examples(batch * (steps + 2), config.vocab_size, seed=0)
    objective = SFTObjective(model.train())
    opt = make_optimizer(model, 1e-4, 0.1, torch.device("cpu"))
    precision = pick_precision(torch.device("cpu"), dtype)
    order = training.step_order(examples, batch, 0, 0)

    def step(idx):
        training.train_step(objective, [D.collate([examples[i] for i in idx], 0)], opt, precision, 1e-4, 1.0)

    for idx in order[:2]:
        step(idx)  # warm-up, and the optimizer's state
    timed = order[2:2 + steps]
    start = time.perf_counter()
    for idx in timed:
        step(idx)
    wall = (time.perf_counter() - start) / steps * 1000  # ms per step, without the profiler's overhead
    with torch.profiler.profile(record_shapes=True) as prof:
        for idx in timed:
            step(idx)
    rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)[:top]
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1000
    lines = [f"{steps} steps, {total:.0f} ms of operator time in all"]
    for e in rows:
        shapes = ", ".join(str(s) for s in e.input_shapes if s)[:70]
        lines.append(f"  {e.key:32} {e.count:5d} calls {e.self_cpu_time_total / 1000 / steps:8.1f} ms/step  {shapes}")
    shares = {}
    for e in events:
        kind = KINDS.get(e.key, "the rest")
        shares[kind] = shares.get(kind, 0.0) + e.self_cpu_time_total / 1000
    lines.append(f"\nwhere the {dtype} step's time goes (operator self time; a step takes {wall:.0f} ms unprofiled):")
    for kind, ms in sorted(shares.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {kind:26} {ms / steps:8.1f} ms/step  {ms / total:6.1%}")
    flops = model_flops(config, [len(examples[i].input_ids) for idx in timed for i in idx])
    mm_rate = flops / (shares.get("matmuls", float("nan")) / 1000) / 1e9
    lines.append(f"  model FLOPs / matmul time = {mm_rate:.0f} GFLOP/s"
                 + (f" = {mm_rate / peak:.0%} of this run's {dtype} matmul peak ({peak:.0f} GFLOP/s); the whole "
                    f"step: {flops / (wall * steps / 1000) / 1e9 / peak:.0%} (MFU)" if peak else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="124m", choices=sorted(SHAPES))
    p.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"), help="of the profiled steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--top", type=int, default=15, help="operators shown")
    p.add_argument("--peak", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the matmul peak (2 s) to put the matmuls' rate beside it")
    args = p.parse_args(argv)
    config = shape_config(args.shape, dropout=0.1)
    torch.manual_seed(0)
    model = GPT(config)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, shape {args.shape} "
          f"({model.num_params() / 1e6:.1f}M parameters)")
    opt = optimizer_ms(model)
    print(f"AdamW update: foreach {opt['foreach']:.0f} ms, fused {opt['fused']:.0f} ms")
    mem = fresh_vs_in_place_ms(400, config.vocab_size)
    print(f"[400, {config.vocab_size}] float32: fresh copy {mem['fresh copy']:.1f} ms, "
          f"in place {mem['in place']:.1f} ms")
    print(f"\nbusiest operators of the {args.dtype} step, by shape (batch {args.batch}):")
    peak = matmul_peaks()[args.dtype] if args.peak else None
    print(profile_steps(model, config, args.dtype, args.batch, args.steps, args.top, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())

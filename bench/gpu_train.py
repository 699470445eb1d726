"""Training speed on a CUDA GPU: tokens/s and MFU at the gpt2 and gpt2-medium shapes. python bench/gpu_train.py

    python bench/gpu_train.py                          # bf16 autocast, packing, fused AdamW, no compile
    python bench/gpu_train.py --compile                # + torch.compile (the figure to quote)
    python bench/gpu_train.py --compile --no-pack      # length-grouped, right-padded batches instead of packing
    python bench/gpu_train.py --device cpu --dtype fp32 --shapes test --steps 2   # the smoke test's run

Random weights (only the shapes matter for speed), tweet-length examples (40-110 tokens, a 10-30 token prompt
without loss), packed into rows of --seq tokens with per-example positions and a block-diagonal causal mask
(minisft/packing.py), so every step has the same shape and almost no padding. The step is the loop's: weighted
token losses summed and divided once by the step's total weight, logits at target positions only (loss.py),
gradient clipping at 1.0, AdamW (optimizer.make_optimizer: fused on CUDA) with weight decay on matrices only.

MFU = model FLOPs per second / peak. Model FLOPs per real token at position t (within its own example) =
6 * N + 12 * n_layer * n_embd * (t + 1), N = parameters without the position embedding (bench/train_speed.py
states the same formula). Two peaks are printed: a torch.mm of two 8192 x 8192 bf16 matrices measured here, and
the data-sheet dense bf16 figure when the GPU is known (H100 / H200 SXM: 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from train_speed import SHAPES, model_flops, synthetic_examples  # noqa: E402

from minisft import data as D  # noqa: E402
from minisft.model import GPT, GPTConfig, official_config  # noqa: E402
from minisft.optimizer import make_optimizer  # noqa: E402
from minisft.packing import collate_packed, packed_batches, packed_loss_sums  # noqa: E402

DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                  "L40S": 362e12, "RTX 4090": 165e12}  # dense (no sparsity) bf16 tensor-core peaks, FLOP/s
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class PackedSFTObjective(torch.nn.Module):
    """The model and the loss of one micro-batch, with packed rows' position ids and mask passed explicitly
    (compiled as one module, as training.py compiles SFTObjective). Returns the loss sums of loss.py."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids, targets, weights, position_ids=None, attn_mask=None):
        hidden = self.model.hidden_states(input_ids, position_ids=position_ids, attn_mask=attn_mask)
        s = packed_loss_sums(hidden, self.model.lm_head.weight, targets, weights)  # weights: one per position
        return s.weighted, s.weight, s.nll


def gpu_config(shape: str) -> GPTConfig:
    if shape in SHAPES:  # "test", "tiny", "124m": the CPU bench's shapes
        n_layer, n_head, n_embd, n_positions, vocab = SHAPES[shape]
        return GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions, vocab_size=vocab)
    return official_config(shape)  # gpt2, gpt2-medium, ...


def make_batches(examples, seq: int, batch: int, pack: bool, seed: int) -> list[dict]:
    """Collated micro-batches, built before timing: packed rows of exactly `seq` tokens, or length-grouped batches
    right-padded to their longest row (what the loop does without packing). Each carries its examples' lengths."""
    out = []
    if pack:
        for rows in packed_batches(examples, seq, batch, seed=seed, epoch=0):
            if len(rows) == batch:  # the same shape every step
                mb = collate_packed(examples, rows, pad_id=0, length=seq)
                out.append({**mb, "lengths": [len(examples[i].input_ids) for row in rows for i in row]})
        return out
    for idx in D.batches(examples, batch, seed=seed, epoch=0):
        mb = D.collate([examples[i] for i in idx], pad_id=0)
        weights = mb["weights"][:, None].expand_as(mb["targets"]).contiguous()  # one per position, as packed
        out.append({**mb, "weights": weights, "lengths": [len(examples[i].input_ids) for i in idx]})
    return out


def train_step(objective, params, mb: dict, optimizer, dtype: torch.dtype, grad_clip: float = 1.0):
    """One optimizer step on one micro-batch: loss = sum(w * CE) / sum(w) over its target tokens (no sync)."""
    device = next(iter(params)).device
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        weighted, weight, _ = objective(mb["input_ids"], mb["targets"], mb["weights"], mb.get("position_ids"),
                                        mb.get("attn_mask"))
    loss = weighted / weight.clamp_min(1e-12)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def mm_peak(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n matmul in `dtype`, best of `repeats`."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def datasheet_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in DATASHEET_BF16.items() if k in name), None)


def run_shape(shape: str, args, device: torch.device) -> dict:
    """Build, warm up (compilation happens here), then time --steps steps. Returns the figures."""
    dtype = DTYPES[args.dtype]
    config = gpu_config(shape)
    torch.manual_seed(args.seed)
    model = GPT(config).to(device).train()
    objective = PackedSFTObjective(model)
    if args.compile:
        # Each transformer block compiled on its own (all share one compiled graph): the fusions that pay
        # (LayerNorm, GELU, residual adds, attention glue) are inside the blocks, and the parts outside them have
        # data-dependent shapes or values (the position check in hidden_states, the target positions of the
        # loss) that would make a whole-model graph break and recompile at every new value.
        for block in model.transformer.h:
            block.compile(dynamic=None if args.pack else True)
    optimizer = make_optimizer(model, 1e-4, 0.1, device)  # fused AdamW on CUDA
    params = [p for p in model.parameters() if p.requires_grad]
    per_step = args.batch * (args.seq if args.pack else 75)  # about how many tokens a step holds
    n_examples = int((args.warmup + args.steps) * per_step / 75 * 1.1) + args.batch
    examples = synthetic_examples(n_examples, config.vocab_size, args.seed)
    batches = make_batches(examples, args.seq, args.batch, args.pack, args.seed)
    if len(batches) < args.warmup + args.steps:
        raise SystemExit(f"only {len(batches)} batches for {args.warmup} + {args.steps} steps")
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in mb.items()}
               for mb in batches[:args.warmup + args.steps]]
    t0 = time.perf_counter()
    for mb in batches[:args.warmup]:
        train_step(objective, params, mb, optimizer, dtype)
    _sync(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed = batches[args.warmup:]
    t0 = time.perf_counter()
    losses = [train_step(objective, params, mb, optimizer, dtype) for mb in timed]
    _sync(device)
    seconds = time.perf_counter() - t0
    lengths = [n for mb in timed for n in mb["lengths"]]
    real, flops = sum(lengths), model_flops(config, lengths)
    return {"shape": shape, "params_M": model.num_params() / 1e6, "tokens_per_s": real / seconds,
            "model_flops_per_s": flops / seconds, "real_token_share": real / sum(mb["input_ids"].numel()
                                                                                for mb in timed),
            "step_ms": 1000 * seconds / len(timed), "warmup_s": warmup_s, "final_loss": float(losses[-1]),
            "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="gpt2,gpt2-medium", help="comma list: gpt2, gpt2-medium, gpt2-large, ...")
    p.add_argument("--seq", type=int, default=256, help="packed row length in tokens")
    p.add_argument("--batch", type=int, default=64, help="rows per step (packed) or examples per step (--no-pack)")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    p.add_argument("--dtype", default="bf16", choices=DTYPES, help="autocast precision (weights stay fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model and loss")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True, help="packed rows (default)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N (cpu only for the smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this script is for a GPU machine (bench/train_speed.py is the CPU one)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts (optimizer, clipping) may use TF32
        torch.backends.cudnn.allow_tf32 = True
        gpu = torch.cuda.get_device_name(device)
    else:
        gpu = "cpu"
    dtype = DTYPES[args.dtype]
    on_gpu = device.type == "cuda"
    measured = mm_peak(device, dtype, n=8192 if on_gpu else 1024, repeats=10 if on_gpu else 2)
    sheet = datasheet_peak(device)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {gpu} | torch {torch.__version__} | {args.dtype}, "
          f"seq {args.seq}, batch {args.batch}, pack {args.pack}, compile {args.compile}, fused AdamW "
          f"{device.type == 'cuda'}")
    print(f"matmul peak measured: {measured / 1e12:.0f} TFLOP/s; data sheet: "
          f"{sheet / 1e12:.0f} TFLOP/s" if sheet else f"matmul peak measured: {measured / 1e12:.3f} TFLOP/s")
    rows = []
    for shape in args.shapes.split(","):
        r = run_shape(shape, args, device)
        r["mfu_measured_peak"] = r["model_flops_per_s"] / measured
        r["mfu_datasheet"] = r["model_flops_per_s"] / sheet if sheet else None
        rows.append(r)
        mem = f", peak {r['peak_mem_gib']:.1f} GiB" if r["peak_mem_gib"] is not None else ""
        sheet_mfu = f", {r['mfu_datasheet']:.1%} of the data sheet" if sheet else ""
        print(f"{shape:12} {r['params_M']:6.0f}M  {r['tokens_per_s']:10.0f} tok/s  {r['step_ms']:7.1f} ms/step  "
              f"MFU {r['mfu_measured_peak']:.1%} of measured mm peak{sheet_mfu}  (real tokens "
              f"{r['real_token_share']:.1%}, warm-up {r['warmup_s']:.0f} s{mem}, loss {r['final_loss']:.3f})",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": gpu, "torch": torch.__version__, "args": vars(args),
                                               "measured_peak": measured, "datasheet_peak": sheet, "rows": rows},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast does minisft train, next to transformers? python bench/train_speed.py [--shapes tiny,124m]

Both sides train on the SAME examples (tweet-length rows: --data synthetic = 40-110 tokens with a 10-30 token
prompt, or --data tweets = data/tweets.jsonl through a tokenizer trained on it), with the same batch size, the same
AdamW (same parameter groups, lr, betas, eps, weight decay), the same gradient clipping, the same dropout and the
same masking (loss on the response tokens only):
  - transformers, the way a user writes it: GPT2LMHeadModel, random batches right-padded to their longest row
    (with an attention mask), `labels` with -100 on prompt and padding, full logits, torch.optim.AdamW with its
    default implementation, torch.autocast for bf16;
  - minisft, the way its loop runs: training.step_order (length-grouped batches), SFTObjective (logits at target
    positions only, made in chunks with their gradient: fast_head.ChunkedHeadLoss), training.train_step,
    optimizer.make_optimizer (fused AdamW), precision.pick_precision. Each of these "levers" can be switched
    (--ours, --levers) to see what it is worth.

"Real tokens" = the examples' own tokens (len(input_ids) of each example; padding not counted), the same number on
both sides, so tokens/s compares the same work. (transformers reads one more token per row, the end of text that
its internal label shift drops: part of what its API costs.)
Model FLOPs per real token at position t = 6 * N + 12 * n_layer * n_embd * (t + 1), where N = the parameters
without the position embedding (the tied wte counts once, as the output projection) and the second term is causal
attention (QK^T and AV, forward and backward). MFU = model FLOPs per second / the torch.mm peak of the same dtype,
measured in the same run: the limit a training step could reach if it were all matmul.

Each measurement runs in its own process, so peak memory (that process's VmHWM: resident memory high-water) never
mixes between the sides. Warm-up steps first, then --repeats timed windows over the same examples (the best one is
the process's figure). The pair of sides runs --rounds times, interleaved (transformers, ours, transformers, ...,
every dtype in each round), and every figure is printed as its median [range] over the rounds; a ratio is taken
within a round. The run's matmul peaks and copy bandwidth (bench/peaks.py) are printed with the results.
transformers is needed here (as in the tests); minisft itself never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from peaks import copy_bandwidth, machine_line, matmul_peaks, spread  # noqa: E402
from sample_speed import SHAPES  # noqa: E402

from minisft import data as D  # noqa: E402
from minisft import memory  # noqa: E402
from minisft import (
    fast_head,  # noqa: E402
    training,  # noqa: E402
)
from minisft import precision as P  # noqa: E402
from minisft import records as R  # noqa: E402
from minisft.loss import IGNORE  # noqa: E402
from minisft.model import GPT, GPTConfig  # noqa: E402
from minisft.objective import SFTObjective  # noqa: E402
from minisft.optimizer import make_optimizer  # noqa: E402
from minisft.packing import collate_packed, packed_batches  # noqa: E402
from minisft.templates import prompt_format  # noqa: E402

SHAPES = {**SHAPES, "test": (1, 2, 32, 128, 256)}  # "test": the smoke test's shape, seconds in all
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
HPARAMS = dict(lr=1e-4, weight_decay=0.1, grad_clip=1.0)  # + betas (0.9, 0.95), eps 1e-8: make_optimizer's
# Our side's switches, each as the loop runs it by default (pack and compile: off, measured as levers).
LEVERS = ("group", "targets_only", "chunked_head", "fused_adamw", "pack", "compile", "keep_memory")


def default_levers(**changes) -> dict:
    return {"group": True, "targets_only": True, "chunked_head": True, "fused_adamw": True, "pack": False,
            "compile": False, "keep_memory": False, **changes}  # keep_memory: train.py --keep-freed-memory


# ------------------------------------------------------------------------------------------------------ the data

def synthetic_examples(n: int, vocab: int, seed: int, lengths=(40, 110), prompt=(10, 30)) -> list[D.Example]:
    """Tweet-shaped rows: total length uniform in `lengths`, the first 10-30 tokens a prompt (no loss there)."""
    rng = random.Random(f"synthetic:{seed}")
    out = []
    for i in range(n):
        ids = [rng.randrange(1, vocab) for _ in range(rng.randint(*lengths) + 1)]  # +1: the shift by one
        n_prompt = rng.randint(*prompt)
        targets = [IGNORE] * (n_prompt - 1) + ids[n_prompt:]
        out.append(D.Example(ids[:-1], targets, 1.0, f"syn-{i}"))
    return out


def tweet_examples(n: int, seed: int, vocab: int = 4096) -> list[D.Example]:
    """n records of data/tweets.jsonl, encoded as training encodes them (template plain, prompt masked)."""
    from minisft.templates import render_prompt, response_text
    from minisft.tokenizer import train_tokenizer

    records, _ = R.load_records(ROOT / "data" / "tweets.jsonl")
    records = random.Random(f"tweets:{seed}").sample(records, n)
    prompts = [render_prompt("plain", r["instruction"]) for r in records]
    tok = train_tokenizer([p + response_text(p, r["response"]) for p, r in zip(prompts, records)], vocab)
    return D.encode_records(tok, records, prompt_format("plain"), max_len=256)[0]


def make_examples(kind: str, n: int, vocab: int, seed: int) -> list[D.Example]:
    return synthetic_examples(n, vocab, seed) if kind == "synthetic" else tweet_examples(n, seed)


def real_tokens(examples, idx) -> int:
    return sum(len(examples[i].input_ids) for i in idx)


def n_params_without_wpe(config: GPTConfig) -> int:
    """Counted, not built (a 124M model would cost the measuring process 0.5 GB): GPT(config).num_params() minus
    the position embedding."""
    C = config.n_embd
    per_layer = 12 * C * C + 13 * C  # c_attn 3C^2+3C, c_proj C^2+C, c_fc 4C^2+4C, mlp c_proj 4C^2+C, 2 LN 4C
    return config.vocab_size * C + config.n_layer * per_layer + 2 * C  # wte (= lm_head) + blocks + ln_f


def model_flops(config: GPTConfig, lengths: list[int]) -> float:
    """Training FLOPs (forward + backward) of examples of these lengths, by the formula in this file's docstring."""
    C, L, N = config.n_embd, config.n_layer, n_params_without_wpe(config)
    return sum(6 * N * T + 12 * L * C * T * (T + 1) / 2 for T in lengths)  # sum over t of (t + 1) = T(T+1)/2


def shape_config(shape: str, dropout: float) -> GPTConfig:
    n_layer, n_head, n_embd, n_positions, vocab = SHAPES[shape]
    return GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions, vocab_size=vocab,
                     dropout=dropout, bos_token_id=0, eos_token_id=0)


# -------------------------------------------------------------------------------------- the transformers side

def hf_batch(examples, idx, pad_id: int = 0) -> dict:
    """Right-padded to the longest row, attention mask, labels -100 on prompt and padding. transformers shifts the
    labels itself, so a row is the example's whole text: its input_ids + its last target (the end of text)."""
    rows = [examples[i].input_ids + [examples[i].targets[-1]] for i in idx]
    labels = [[IGNORE] + examples[i].targets for i in idx]  # labels[t + 1] = targets[t]; labels[0] is never used
    T = max(map(len, rows))
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    lab = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, (r, l) in enumerate(zip(rows, labels)):
        input_ids[b, :len(r)], lab[b, :len(l)], mask[b, :len(r)] = torch.tensor(r), torch.tensor(l), 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": lab}


def hf_model(config: GPTConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    p = config.dropout
    return GPT2LMHeadModel(GPT2Config(n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                                      n_positions=config.n_positions, vocab_size=config.vocab_size, resid_pdrop=p,
                                      embd_pdrop=p, attn_pdrop=p, bos_token_id=0, eos_token_id=0))


def adamw_groups(model, weight_decay: float) -> list[dict]:
    """make_optimizer's groups: weight decay on matrices only."""
    params = list(dict.fromkeys(model.parameters()))
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def hf_side(config: GPTConfig, dtype: str, lr: float, fused: bool = False):
    """(step function, batch plan) for transformers: forward with labels, backward, clip, AdamW step."""
    model = hf_model(config).train()
    opt = torch.optim.AdamW(adamw_groups(model, HPARAMS["weight_decay"]), lr=lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=fused or None)

    def step(examples, idx):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(**hf_batch(examples, idx)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), HPARAMS["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    def plan(examples, batch_size, seed):  # random batches: no length grouping
        return D.batches(examples, batch_size, seed=seed, epoch=0, group_by_length=False)

    return step, plan


# ---------------------------------------------------------------------------------------------- the minisft side

class PlainHeadObjective(SFTObjective):
    """Lever off: logits at target positions only, but all N at once through autograd (head_loss_sums chunk=None)."""

    def forward(self, input_ids, targets, weights):
        return fast_head.head_loss_sums(self.model.hidden_states(input_ids), self.model.lm_head.weight, targets,
                                        weights, chunk=None)


class PackedObjective(SFTObjective):
    """SFTObjective for packed rows (bench only: train_step passes input_ids, targets, weights; the position ids
    and the block-diagonal mask come through `self.extra`). Weights are 1 here, so one weight per row is exact."""

    extra: dict = {}

    def forward(self, input_ids, targets, weights):
        hidden = self.model.hidden_states(input_ids, position_ids=self.extra["position_ids"],
                                          attn_mask=self.extra["attn_mask"])
        return fast_head.head_loss_sums(hidden, self.model.lm_head.weight, targets, weights)


def ours_side(config: GPTConfig, dtype: str, lr: float, levers: dict):
    """(step function, batch plan) for minisft, each lever as `levers` says."""
    model = GPT(config).train()
    if levers["pack"]:
        objective = PackedObjective(model)
    elif not levers["targets_only"]:
        objective = SFTObjective(model, fast=False)  # the textbook loss of loss.py: logits at every position
    else:
        objective = (SFTObjective if levers["chunked_head"] else PlainHeadObjective)(model)
    run = torch.compile(objective, dynamic=True) if levers["compile"] else objective
    opt = make_optimizer(model, lr, HPARAMS["weight_decay"], torch.device("cpu"))
    if bool(opt.defaults.get("fused")) != levers["fused_adamw"]:
        opt = torch.optim.AdamW(adamw_groups(model, HPARAMS["weight_decay"]), lr=lr, betas=(0.9, 0.95), eps=1e-8,
                                fused=levers["fused_adamw"] or None)  # the same groups and settings, other kernel
    precision = P.pick_precision(torch.device("cpu"), dtype)  # dtype as the table's row says

    def step(examples, idx):
        if levers["pack"]:
            mb = collate_packed(examples, idx, pad_id=0)
            objective.extra = mb
            mb = {**mb, "weights": torch.ones(len(idx))}
        else:
            mb = D.collate([examples[i] for i in idx], pad_id=0)
        return training.train_step(run, [mb], opt, precision, lr, HPARAMS["grad_clip"])["train/loss"]

    def plan(examples, batch_size, seed):
        if levers["pack"]:  # about batch_size examples' worth of tokens per step, in rows of 256 tokens
            row = min(256, config.n_positions)
            mean = sum(len(e.input_ids) for e in examples) / len(examples)
            return packed_batches(examples, row, max(1, round(batch_size * mean / row)), seed=seed, epoch=0)
        if levers["group"]:
            return training.step_order(examples, batch_size, seed, 0)  # the loop's own batches
        return D.batches(examples, batch_size, seed=seed, epoch=0, group_by_length=levers["group"])

    return step, plan


# ------------------------------------------------------------------------------------- one measurement (worker)

def rss_mib(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory in MiB; VmHWM starts afresh at exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(spec: dict) -> dict:
    """Train one side for spec["warmup"] + spec["repeats"] * spec["steps"] steps; time the last ones."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec["side"] == "ours" and spec["levers"].get("keep_memory"):
        memory.keep_freed_memory()  # as train.py --keep-freed-memory: before any large tensor
    if spec["side"] == "hf":
        import transformers  # noqa: F401  (before the baseline: part of what this side costs)
    baseline = rss_mib("VmRSS")
    config = shape_config(spec["shape"], spec["dropout"])
    examples = make_examples(spec["data"], spec["batch"] * (spec["warmup"] + spec["steps"]), config.vocab_size,
                             spec["seed"])
    warm, timed = examples[:spec["batch"] * spec["warmup"]], examples[spec["batch"] * spec["warmup"]:]
    torch.manual_seed(spec["seed"])
    lr = spec.get("lr", HPARAMS["lr"])
    if spec["side"] == "hf":
        step, plan = hf_side(config, spec["dtype"], lr, fused=spec.get("hf_fused", False))
    else:
        step, plan = ours_side(config, spec["dtype"], lr, spec["levers"])
    losses = [step(warm, idx) for idx in plan(warm, spec["batch"], spec["seed"])] if warm else []
    windows = []
    for r in range(spec["repeats"]):
        order = plan(timed, spec["batch"], spec["seed"] + r)
        start = time.perf_counter()
        losses += [step(timed, idx) for idx in order]
        windows.append(time.perf_counter() - start)
    tokens = real_tokens(timed, range(len(timed)))
    rates = [tokens / w for w in windows]
    return {**spec, "tokens_per_window": tokens, "tokens_per_s": max(rates),
            "median_tokens_per_s": statistics.median(rates),
            "spread": (max(rates) - min(rates)) / statistics.median(rates),
            "flops_per_window": model_flops(config, [len(e.input_ids) for e in timed]),
            "peak_mib": rss_mib("VmHWM"), "baseline_mib": baseline, "losses": losses,
            "threads": torch.get_num_threads()}


def run_isolated(spec: dict, quiet_load: float | None = None) -> dict:
    """measure(spec) in a fresh Python process: its own peak memory, nothing cached from another run.

    quiet_load: first wait (up to 15 minutes) until the 1-minute load average is below it, so that other work on
    the machine slows neither side. The load before and after is returned either way.
    """
    waited = time.time()
    while quiet_load is not None and os.getloadavg()[0] >= quiet_load and time.time() - waited < 900:
        time.sleep(10)
    before = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {spec['side']} {spec['shape']} {spec['dtype']} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": (before, os.getloadavg()[0])}


# ------------------------------------------------------------------------------------------------- the report

def parse_levers(text: str) -> dict:
    """"fused_adamw=on,pack=off" -> {"fused_adamw": True, "pack": False}."""
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in LEVERS or value not in ("on", "off"):
            raise SystemExit(f"bad lever {item!r}: use NAME=on|off, NAME one of {', '.join(LEVERS)}")
        out[name] = value == "on"
    return out


def _onoff(v) -> str:
    return "auto" if v is None else "on" if v else "off"


def mfu(r: dict, peak: float) -> float:
    return r["flops_per_window"] / r["tokens_per_window"] * r["tokens_per_s"] / 1e9 / peak


def _cell(rs: list[dict], peak: float) -> str:
    rate = [r["tokens_per_s"] for r in rs]
    return (f"{spread(rate, '{:.0f}'):>18} {statistics.median(mfu(r, peak) for r in rs):6.1%} "
            f"{statistics.median(r['peak_mib'] for r in rs):6.0f}")


def per_round(a: list[dict], b: list[dict], key: str = "tokens_per_s") -> list[float]:
    return [x[key] / y[key] for x, y in zip(a, b)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="tiny,124m", help="comma list of: " + ", ".join(SHAPES))
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of: " + ", ".join(DTYPES))
    p.add_argument("--data", default="synthetic", choices=("synthetic", "tweets"), help="rows to train on")
    p.add_argument("--batch", type=int, default=8, help="examples per step (both sides)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per window (default: 6 at 124m, 40 else)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocations, kernel choice)")
    p.add_argument("--repeats", type=int, default=1, help="timed windows per process; the best counts")
    p.add_argument("--rounds", type=int, default=3, help="times each comparison runs, interleaved; figures are the "
                   "median [range] over rounds")
    p.add_argument("--dropout", type=float, default=None, help="both sides (default: 0.1 at 124m as GPT-2, 0 tiny)")
    p.add_argument("--ours", default="", help="set our levers, e.g. fused_adamw=off,pack=on (default: as "
                   "minisft's loop runs: " + ", ".join(f"{k} {_onoff(v)}" for k, v in default_levers().items()) + ")")
    p.add_argument("--hf", default="", help="give transformers a lever too (fused_adamw=on): how much of the gap "
                   "is it?")
    p.add_argument("--levers", default="", help="comma list of our levers to flip one at a time, measured at "
                   "--lever-at: " + ", ".join(LEVERS) + ", threads1")
    p.add_argument("--lever-at", default="124m:bf16", help="SHAPE:DTYPE where --levers are measured")
    p.add_argument("--check-steps", type=int, default=20, help="steps of the bf16-vs-fp32 loss check (124m shape, "
                   "real tweets, lr 3e-4; 0 = skip)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quiet-load", type=float, default=None, help="before each measurement, wait until the "
                   "1-minute load average is below this (a shared machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)  # the matmul peak is measured with the workers' thread count
    ours, hf_extra = parse_levers(args.ours), parse_levers(args.hf)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, avx512_bf16 "
          f"{torch.cpu._is_avx512_bf16_supported()}, amx {torch.cpu._is_amx_tile_supported()}")
    peaks = matmul_peaks()
    print(machine_line(peaks, copy_bandwidth()))
    print("ours: " + ", ".join(f"{k} {_onoff(v)}" for k, v in default_levers(**ours).items())
          + " | transformers: plain loop" + "".join(f", {k} {_onoff(v)}" for k, v in hf_extra.items()))

    def run(side, shape, dtype, threads=None, **levers):
        steps = args.steps or (6 if shape == "124m" else 40)
        dropout = args.dropout if args.dropout is not None else (0.1 if shape == "124m" else 0.0)
        spec = dict(side=side, shape=shape, dtype=dtype, data=args.data, batch=args.batch, steps=steps,
                    warmup=args.warmup, repeats=args.repeats, dropout=dropout, seed=args.seed,
                    threads=threads or args.threads, hf_fused=hf_extra.get("fused_adamw", False),
                    levers=default_levers(**{**ours, **levers}))
        return run_isolated(spec, args.quiet_load)

    print(f"\n{args.rounds} rounds, interleaved: real tokens/s median [range], MFU (model FLOP/s / this run's "
          f"matmul peak of the dtype, median), peak RSS MiB (median); speed and memory = ours / transformers")
    print(f"{'shape':5} {'dtype':5} | {'HF tok/s':>18} {'MFU':>6} {'peak':>6} | {'ours tok/s':>18} {'MFU':>6} "
          f"{'peak':>6} | {'speed':>18} {'memory':>6}")
    results = {}
    for shape in args.shapes.split(","):
        for _ in range(args.rounds):  # every dtype in each round: default-vs-fp32 ratios come from one round
            for dtype in args.dtypes.split(","):
                hf, us = results.setdefault((shape, dtype), ([], []))
                hf.append(run("hf", shape, dtype))
                us.append(run("ours", shape, dtype))
        for dtype in args.dtypes.split(","):
            hf, us = results[shape, dtype]
            print(f"{shape:5} {dtype:5} | {_cell(hf, peaks[dtype])} | {_cell(us, peaks[dtype])} | "
                  f"{spread(per_round(us, hf), unit='x'):>18} "
                  f"{statistics.median(per_round(us, hf, 'peak_mib')):5.2f}x", flush=True)

    for shape in args.shapes.split(","):
        if (shape, "fp32") not in results:
            continue
        hf32, us32 = results[shape, "fp32"]
        default = P.default_dtype(torch.device("cpu"), n_params_without_wpe(shape_config(shape, 0.0)))
        line = (f"\n{shape}, against transformers in fp32: ours in fp32 {spread(per_round(us32, hf32), unit='x')} "
                f"tokens/s, {statistics.median(per_round(us32, hf32, 'peak_mib')):.2f}x peak memory")
        if (shape, default) in results and default != "fp32":
            us = results[shape, default][1]
            line += (f"; ours at its default precision ({default}) {spread(per_round(us, hf32), unit='x')} "
                     f"tokens/s, {statistics.median(per_round(us, hf32, 'peak_mib')):.2f}x peak memory")
        print(line)

    if args.check_steps:  # real tweets: random tokens have nothing to learn, their loss stays at ln(vocab)
        spec = dict(side="ours", shape="124m", data="tweets", batch=args.batch, steps=args.check_steps, warmup=0,
                    repeats=1, dropout=0.0, seed=args.seed, threads=args.threads, lr=3e-4, levers=default_levers())
        a, b = (run_isolated({**spec, "dtype": d}) for d in DTYPES)
        gaps = [abs(x - y) / abs(y) for x, y in zip(b["losses"], a["losses"])]
        worst, typical = max(range(len(gaps)), key=gaps.__getitem__), statistics.median(gaps)
        print(f"\nbf16 vs fp32 loss check, {args.check_steps} steps on tweets (124m shape, lr 3e-4): loss "
              f"{a['losses'][0]:.3f} -> {a['losses'][-1]:.3f} in fp32, -> {b['losses'][-1]:.3f} in bf16; the gap "
              f"between the curves: median {typical:.2%} ({'within' if typical <= 0.01 else 'OVER'} "
              f"the 1% tolerance), largest {gaps[worst]:.2%} at step {worst} ({a['losses'][worst]:.3f} vs "
              f"{b['losses'][worst]:.3f}), last {gaps[-1]:.2%}")

    if args.levers:
        shape, dtype = args.lever_at.split(":")
        print(f"\nlevers flipped one at a time, ours at {shape} {dtype}, {args.rounds} rounds each, interleaved with "
              f"ours as it runs: tok/s and peak MiB (median), speed vs ours median [range]")
        for lever in args.levers.split(","):
            base, flipped_runs = [], []
            for _ in range(args.rounds):
                base.append(run("ours", shape, dtype))
                if lever == "threads1":
                    flipped_runs.append(run("ours", shape, dtype, threads=1))
                    name = "1 thread"
                else:
                    flipped = not base[-1]["levers"][lever]
                    flipped_runs.append(run("ours", shape, dtype, **{lever: flipped}))
                    name = f"{lever} {_onoff(flipped)}"
            print(f"  {name:24} {statistics.median(r['tokens_per_s'] for r in flipped_runs):8.0f} "
                  f"{statistics.median(r['peak_mib'] for r in flipped_runs):6.0f}  "
                  f"{spread(per_round(flipped_runs, base), unit='x')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

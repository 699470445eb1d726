"""The supervised fine-tuning loop, written out.

Read `train()` top to bottom: set-up (run folder, data, model, optimizer), then the loop, whose one optimizer step
is `train_step()`. The SFT mechanics live where you would look for them:
  - the prompt mask and the shift by one: data.py (`encode_example`), consumed here as `targets`;
  - the engagement weight: weighting.py, consumed here as `weights`;
  - the loss and why it is a sum over tokens divided once per step: loss.py and `train_step()` below;
  - checkpoints and exact resume: checkpoint.py; metrics: tracking.py.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from minisft import data as D, memory
from minisft.checkpoint import load_train_state, rng_state, save_checkpoint, set_rng_state
from minisft.conditioning import BUCKETS
from minisft.config import TrainConfig, model_defaults, parse_args
from minisft.distributed import agreed, all_ranks, setup_distributed
from minisft.evaluate import evaluate_run, sample_tweets
from minisft.files import DataError
from minisft.lora import ADAPTERS_FILE, TARGETS, adapter_state, add_lora, load_adapter_state
from minisft.loss import IGNORE
from minisft.objective import SFTObjective, validation_loss
from minisft.optimizer import lr_at, make_optimizer
from minisft.precision import Precision, default_dtype, pick_device, pick_precision
from minisft.pretrained import (ModelNotAvailable, check_context, config_of, default_model, load_or_build_model,
                                save_model)
from minisft.runs import open_run
from minisft.templates import format_prompt, prompt_format, response_text
from minisft.tracking import Tracker, flatten
from minisft.tweets import judges

LORA_BASE = "lora_base"  # a LoRA run on tiny keeps its from-scratch base here: resume rebuilds the model from it


class TrainingError(RuntimeError):
    """A problem the user can fix (their data, flags or hardware): printed as one line, no traceback."""


NOT_UPDATED = ("stopping before this step changes the weights; the last checkpoint is intact (try a lower --lr, or "
               "--dtype fp32)")


# ----------------------------------------------------------------------------------------------- one optimizer step

def step_denominator(micro_batches, device) -> torch.Tensor:
    """Sum of weights over every target token of the step, on every process: the loss divides by this ONCE."""
    total = sum(float((mb["weights"][:, None] * (mb["targets"] != IGNORE)).sum()) for mb in micro_batches)
    total = torch.tensor(total, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(total)  # all processes' tokens count: the same step as one process with the whole batch
    return total


def accumulate_gradients(objective, micro_batches, precision: Precision) -> dict:
    """Forward and backward over the micro-batches of one optimizer step (gradient accumulation).

    loss = sum(w * CE) over all target tokens of all micro-batches / sum(w) over the same tokens.
    Each micro-batch's backward() adds its share sum_mb(w * CE) / denominator to the gradients, so after the last
    one the gradients are exactly those of the step's loss, however the step was split. (Dividing each micro-batch
    by its OWN token count and averaging those means is the well-known accumulation bug.) A micro-batch with no
    target contributes 0: its share is 0 / denominator, and a step with no target at all skips the division.
    """
    device = next(objective.parameters()).device
    denom = step_denominator(micro_batches, device)
    world = dist.get_world_size() if dist.is_initialized() else 1
    weighted_sum = nll_sum = 0.0
    tokens = 0
    for i, mb in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        # Under DDP, gradients are averaged across processes only after the step's last micro-batch.
        sync = objective.no_sync() if (world > 1 and not last) else nullcontext()
        with sync:
            with precision.autocast():  # the forward pass only: backward runs each op in its forward's dtype
                s = objective(mb["input_ids"].to(device), mb["targets"].to(device), mb["weights"].to(device))
            # This micro-batch's share of the step's loss. DDP averages gradients over processes (divides by
            # world), so multiply back: what reaches the weights is the gradient of the whole step's sum / denom.
            loss = s.weighted * world / denom.clamp_min(1e-12).to(s.weighted.dtype)
            # Outside autocast: leaving it frees its cache of 16-bit weight copies before backward, whose own
            # saved copies are then freed layer by layer as backward passes them.
            precision.backward(loss)
        weighted_sum, nll_sum = weighted_sum + float(s.weighted.detach()), nll_sum + float(s.nll)
        tokens += s.tokens
    sums = torch.tensor([weighted_sum, nll_sum, tokens], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(sums)  # the step's metrics over all processes
    return {"train/loss": float(sums[0]) / max(float(denom), 1e-12),
            "train/loss_unweighted": float(sums[1]) / max(float(sums[2]), 1.0), "train/target_tokens": int(sums[2])}


def train_step(objective, micro_batches, optimizer, precision: Precision, lr: float, grad_clip: float) -> dict:
    """One optimizer step: accumulate gradients, refuse a non-finite loss, clip, update. Returns its metrics."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    metrics = accumulate_gradients(objective, micro_batches, precision)
    if not math.isfinite(metrics["train/loss"]):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingError(f"the loss became {metrics['train/loss']}: {NOT_UPDATED}")
    norm = precision.unscale_and_clip(optimizer, objective.parameters(), grad_clip)
    # A finite loss can still have an inf/NaN gradient (an overflow in backward). Under fp16 that is the loss
    # scaler's business (it skips the step and lowers its scale); otherwise the update would write NaN everywhere.
    if not math.isfinite(norm) and precision.scaler is None:
        optimizer.zero_grad(set_to_none=True)
        raise TrainingError(f"the gradient norm became {norm} (the loss was {metrics['train/loss']:.4f}): "
                            f"{NOT_UPDATED}")
    precision.update(optimizer)
    metrics["train/grad_norm"], metrics["train/lr"] = norm, lr
    optimizer.zero_grad(set_to_none=True)
    return metrics


def step_order(examples, step_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's optimizer steps, each a list of step_size example indices (length-grouped, shuffled).

    Batches are formed at the size of the whole STEP and only then cut into micro-batches, so the examples of a step
    don't depend on how it is split: --batch-size 8 --grad-accum 2 trains on exactly the steps of --batch-size 16.
    A last, smaller step is left out of the epoch (a different one each epoch, since the order is reshuffled).
    """
    return [b for b in D.batches(examples, step_size, seed=seed, epoch=epoch) if len(b) == step_size]


def micro_batches(step: list[int], batch_size: int) -> list[list[int]]:
    return [step[i:i + batch_size] for i in range(0, len(step), batch_size)]


# ------------------------------------------------------------------------------------------------------- set-up

def choose_model(cfg: TrainConfig, resume_ckpt: Path | None) -> str:
    """The model this run trains: the checkpoint's on resume (a LoRA run's base, its adapters are loaded after),
    else --model, else gpt2 if it can be had, else tiny."""
    if resume_ckpt is not None and cfg.lora_rank:
        return str(resume_ckpt.parent.parent / LORA_BASE) if cfg.model == "tiny" else cfg.model
    if resume_ckpt is not None:
        return str(resume_ckpt)
    return cfg.model if cfg.model is not None else default_model()


def prepare_run(cfg: TrainConfig, run_dir: Path | None, model_name: str, device=torch.device("cpu"), check=True):
    """-> (model, tokenizer, data.Dataset): the records read once and split (data.load_split), the plan checked
    (plan_stops, unless not check: explain), the model and its tokenizer (LoRA added), then the weighted, masked,
    tokenized examples (data.encode_split); None after --plan. The tiny model's tokenizer learns its vocabulary in
    between, from the training split as training sees it. run_dir None: rejects (--on-bad skip) are counted, not
    written (processes other than rank 0)."""
    rejects = run_dir / "rejected_rows.jsonl" if cfg.on_bad == "skip" and run_dir is not None else None
    split = D.load_split(cfg, rejects)
    fmt = prompt_format(cfg.template)
    prompts = [format_prompt(fmt, r["instruction"]) for r in split.train]
    texts = [p + response_text(p, r["response"]) for p, r in zip(prompts, split.train)]
    if check and plan_stops(cfg, model_name, texts, device):
        return None
    frozen = TARGETS[cfg.lora_targets] if cfg.lora_rank and cfg.base_dtype == "bf16" else ()
    model, tok = load_or_build_model(model_name, texts, cfg.seed, cfg.tiny_vocab, frozen)
    model.activation_checkpointing = cfg.activation_checkpointing
    if cfg.lora_rank:
        add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
                 torch.bfloat16 if cfg.base_dtype == "bf16" else None)
    max_len = D.example_length(cfg.max_len, model.config.n_positions)
    return model, tok, D.encode_split(split, tok, fmt, max_len, cfg.train_on_prompt)


def plan_stops(cfg: TrainConfig, model_name: str, texts: list[str], device) -> bool:
    """Print the run's memory and time plan (memory.py); True for --plan, which stops there. A run that does not
    fit the device's free memory stops here too, before the weights are loaded, let alone downloaded."""
    config = config_of(model_name, cfg.tiny_vocab)
    dtype = cfg.dtype if cfg.dtype != "auto" else default_dtype(device, memory.parameters(config))
    plan, lines, _ = memory.run_plan(cfg, config, dtype, texts, device)
    print("\n".join([lines[0], plan.breakdown()] + lines[1:]) if cfg.plan else lines[0])
    if len(lines) > 1 and not cfg.plan:
        raise TrainingError(lines[1])
    return cfg.plan


# ----------------------------------------------------------------------------------------------------- the loop

class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop after the current step, save, and exit cleanly."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{signal.Signals(signum).name}: finishing this step, saving a checkpoint, then stopping...",
              file=sys.stderr)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(cfg: TrainConfig, given: set[str] = frozenset()) -> Path:
    """Run (or resume) one fine-tuning run; returns its folder."""
    rank, world, local_rank = setup_distributed()
    is_main = rank == 0
    cfg, run_dir, resume_ckpt = open_run(cfg, given)
    device = pick_device(cfg.device, local_rank)
    model_name = choose_model(cfg, resume_ckpt)
    check_context(cfg.max_len, model_name)  # before any work: a --max-len longer than the context fails mid-run
    if resume_ckpt is None:
        cfg.model = model_name
    model_defaults(cfg)
    torch.manual_seed(cfg.seed)

    # Data and model. Every process builds the same examples (deterministic), then takes its own share per step.
    prepared = prepare_run(cfg, run_dir if is_main and not cfg.plan else None, model_name, device)
    if prepared is None:  # --plan: the plan is printed, nothing is trained
        return run_dir
    if cfg.keep_freed_memory:
        memory.keep_freed_memory()  # before the first step's tensors: every later step reuses their pages
    model, tok, data = prepared
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.lora_rank and model_name == "tiny":  # a base built from scratch: keep it, for resume
            save_model(model, run_dir / LORA_BASE)
            tok.save(run_dir / LORA_BASE)
    if resume_ckpt is not None and cfg.lora_rank:
        load_adapter_state(model, load_file(resume_ckpt / ADAPTERS_FILE))
    train_ex, val_ex, train_recs, val_recs = data.train, data.val, data.split.train, data.split.val
    if cfg.dropout is not None:
        model.set_dropout(cfg.dropout)
    model.to(device)
    model.train()
    # Dropout draws from the global RNG: each process gets its own stream, or every rank would drop the same units.
    torch.manual_seed(cfg.seed + 100_003 * rank)
    precision = pick_precision(device, cfg.dtype, model.num_params())  # "auto" depends on the model's size

    micro_per_step = cfg.grad_accum * world  # micro-batches of batch_size per optimizer step, all processes
    step_size = cfg.batch_size * micro_per_step  # examples per optimizer step
    steps_per_epoch = len(step_order(train_ex, step_size, cfg.seed, 0))
    if steps_per_epoch == 0:
        raise TrainingError(f"{len(train_ex)} examples make fewer than one step of {micro_per_step} micro-batches "
                            f"of {cfg.batch_size}: lower --batch-size or --grad-accum")
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = cfg.warmup if cfg.warmup is not None else max(1, total_steps // 20)

    objective = SFTObjective(model, fast=cfg.fast_head)
    if cfg.compile:
        objective = torch.compile(objective)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        objective = DDP(objective, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, device)

    step = 0
    wandb_id = None
    if resume_ckpt is not None:
        state = load_train_state(resume_ckpt)
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # one per process
        if len(rngs) != world:
            raise TrainingError(f"{run_dir} was trained by {len(rngs)} process(es): resume it with {len(rngs)} "
                                f"(torchrun --nproc_per_node {len(rngs)}), or its steps and data order would differ")
        optimizer.load_state_dict(state["optimizer"])
        precision.load_state_dict(state["scaler"])
        set_rng_state(rngs[rank])
        step, wandb_id = state["step"], state.get("wandb_id")
        if is_main:
            print(f"resuming {run_dir} at step {step} from {resume_ckpt.name}")
    elif is_main:
        cfg.save(run_dir / "run_config.json")

    tracker = Tracker(run_dir, asdict(cfg), cfg.wandb, cfg.wandb_project, resume_id=wandb_id, enabled=is_main)
    if is_main:
        epoch0 = [mb for st in step_order(train_ex, step_size, cfg.seed, 0) for mb in micro_batches(st, cfg.batch_size)]
        pad = D.pad_fraction(epoch0, train_ex)
        print(f"model {cfg.model}: {model.num_params() / 1e6:.1f}M parameters on {device} ({precision.dtype}) | "
              f"{len(train_ex)} train / {len(val_ex)} val examples | weights {cfg.weights} | "
              f"{total_steps} steps of {cfg.batch_size * micro_per_step} examples | padding {pad:.1%}")
        tracker.log(step, {"data/" + k: v for k, v in flatten(data.stats).items()})
    sample_recs = val_recs[:cfg.eval_samples]
    condition = data.split.condition  # None unless --condition: then samples ask for the top engagement bucket
    judge = judges.grader(train_recs, val_recs) if is_main and cfg.eval_samples else None
    if judge is not None:
        print(f"sample tweets are scored by {judges.describe(judge)}")
    if is_main and resume_ckpt is None:
        judges.save_picker(run_dir, train_recs, val_recs)

    def checkpoint(at_step):
        rngs = all_ranks(rng_state())  # every process's generator, so a resumed run draws the same dropout masks
        if is_main:
            state = {"optimizer": optimizer.state_dict(), "scaler": precision.state_dict(), "rng": rngs,
                     "step": at_step, "epoch": at_step // steps_per_epoch, "wandb_id": tracker.wandb_id,
                     "data_position": (at_step % steps_per_epoch) * step_size}
            save_checkpoint(run_dir, at_step, model, tok, cfg.template, state, keep_last=cfg.keep_last,
                            condition=condition.to_dict() if condition else None,
                            adapters=adapter_state(model) if cfg.lora_rank else None)

    def run_eval(at_step):
        metrics = validation_loss(objective, val_ex, cfg.batch_size, tok.eos_id, precision)
        if data.val_bucketed:  # a conditioned run: the same loss with each example's true bucket in its prompt
            metrics.update(validation_loss(objective, data.val_bucketed, cfg.batch_size, tok.eos_id, precision,
                                           prefix="val_bucket/"))
        if is_main:
            tracker.log(at_step, metrics)
            if judge is not None:
                top = len(BUCKETS) - 1 if condition else None
                tracker.log_samples(at_step, sample_tweets(model, tok, prompt_format(cfg.template), sample_recs,
                                                           cfg.seed, judge, top))
        return metrics

    bar = None
    if is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True)
    stop_at = total_steps if cfg.stop_after is None else min(total_steps, step + cfg.stop_after)
    last_saved = step if resume_ckpt is not None else -1
    order, order_epoch = None, -1
    try:
        with StopFlag() as stop:
            # The stop flag is agreed by all processes at every step (one that got Ctrl-C tells the others), so
            # they all leave the loop after the same step and save one checkpoint together.
            while step < stop_at and not agreed(stop.requested, device):
                # The data position is a pure function of the step: epoch, then a slice of that epoch's batches.
                epoch, k = divmod(step, steps_per_epoch)
                if epoch != order_epoch:  # the epoch's shuffled, length-grouped steps, computed once per epoch
                    order, order_epoch = step_order(train_ex, step_size, cfg.seed, epoch), epoch
                # This step's examples, cut into micro-batches; each process takes its own grad_accum of them.
                mine = micro_batches(order[k], cfg.batch_size)[rank * cfg.grad_accum:(rank + 1) * cfg.grad_accum]
                micro = [D.collate([train_ex[i] for i in idx], tok.eos_id) for idx in mine]
                t0 = time.perf_counter()
                lr = lr_at(step, total_steps, cfg.lr, warmup, cfg.min_lr_ratio)
                try:
                    metrics = train_step(objective, micro, optimizer, precision, lr, cfg.grad_clip)
                except torch.OutOfMemoryError:
                    raise TrainingError(f"out of memory at --batch-size {cfg.batch_size}: lower --batch-size and "
                                        "raise --grad-accum to keep the same step") from None
                step += 1
                # target_tokens is already summed over all processes (accumulate_gradients' all-reduce)
                metrics["train/step_s"] = time.perf_counter() - t0
                metrics["train/tokens_per_s"] = metrics["train/target_tokens"] / metrics["train/step_s"]
                metrics["train/epoch"] = step / steps_per_epoch
                if is_main:
                    tracker.log(step, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", lr=f"{lr:.2e}",
                                    tok_s=f"{metrics['train/tokens_per_s']:.0f}")
                if cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                    run_eval(step)
                if cfg.save_every and step % cfg.save_every == 0 and step < stop_at:
                    checkpoint(step)
                    last_saved = step
    finally:
        if bar is not None:
            bar.close()
    if last_saved != step:
        checkpoint(step)  # end of run, --stop-after, or Ctrl-C / SIGTERM: always leave a resumable checkpoint
    if step >= total_steps:
        final = run_eval(step)
        if is_main and final:
            print(f"done: {step} steps | val loss {final['val/loss']:.3f} (unweighted "
                  f"{final['val/loss_unweighted']:.3f}, ppl {final['val/ppl']:.1f}) | run folder {run_dir}")
        if is_main and cfg.final_eval:
            # The tweet-quality harness (evaluate.py) on the checkpoint just saved: eval.json + eval_samples.jsonl.
            evaluate_run(run_dir, num_prompts=cfg.final_eval, device=str(device), wandb_run=tracker.wandb, dataset=data)
        if is_main:
            prompt = val_recs[0]["instruction"] if val_recs else "Write a witty tweet about debugging"
            print(f"try it:  python sample.py --model {run_dir} --prompt {json.dumps(prompt, ensure_ascii=False)}")
    elif is_main:
        print(f"stopped at step {step}/{total_steps}; continue with:  python train.py --resume {run_dir}")
    if world > 1:
        print(f"[rank {rank}] left the loop after step {step}", file=sys.stderr)
    tracker.finish()
    if dist.is_initialized():
        dist.barrier()
    return run_dir


def main(argv=None) -> int:
    cfg, given = parse_args(argv)
    try:
        train(cfg, given)
    except (TrainingError, ModelNotAvailable, DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0

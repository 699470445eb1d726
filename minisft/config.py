"""Every training setting in one dataclass, and the command line made from it.

Each field's `help` is the flag's help text, so `python train.py --help` and this file can never disagree.
The resolved config (after defaults that depend on the model are filled in) is saved with each run as
run_config.json; `--resume` reads it back.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from minisft.conditioning import MEASURES
from minisft.weighting import DEFAULT_MAX_WEIGHT, SCHEMES, SIGNALS


def opt(default, help, **kw):
    return field(default=default, metadata=dict(help=help, **kw))


@dataclass
class TrainConfig:
    # what to train
    model: str | None = opt(None, "gpt2 | gpt2-medium | gpt2-large | gpt2-xl | tiny | PATH (a Hugging Face folder, "
                                  "or one of our run folders to keep fine-tuning). Default: gpt2 when it is cached or "
                                  "the Hub can be reached, else tiny (an explicit --model gpt2 never falls back)")
    data: str = opt("data/tweets.jsonl", "training data: JSONL, CSV or Parquet in the minisft schema")
    weights: str = opt("auto", "engagement weighting of each example's loss (none = plain SFT; auto = none when "
                               "--condition is on, as by default, else log). The defaults of --weights, --engagement "
                               "and --condition are the README engagement experiment's best row",
                       choices=("auto", *SCHEMES))
    engagement: str = opt("relative", "what the weights and the condition measure: raw likes + comments, or "
                                      "relative to the author's usual (the median of their training tweets)",
                          choices=SIGNALS)
    condition: str = opt("auto", "engagement-conditioned SFT: each training prompt gets a line with its engagement "
                                 "bucket (quintiles), the observed one or one predicted from the text (cross-fitted); "
                                 "sampling asks for the top bucket (minisft/conditioning.py). auto = predicted when "
                                 "the data has likes or comments, else none", choices=("auto", *MEASURES))
    condition_dropout: float = opt(0.1, "share of training prompts left without the engagement line, so the model "
                                        "keeps an unconditioned mode")
    max_weight: float = opt(DEFAULT_MAX_WEIGHT, "clip engagement weights at this multiple of the mean, so one "
                                                "viral tweet can't dominate")
    template: str = opt("plain", "prompt template name (see minisft/templates.py)")
    train_on_prompt: bool = opt(False, "learner switch: also compute the loss on the prompt tokens (no mask), "
                                       "so the model learns to write instructions too")
    mix: str | None = opt(None, "sample training data by source, e.g. own=0.5,viral=0.3,diverse=0.2")
    val_fraction: float = opt(0.05, "share of records held out for validation (split by a stable hash)")
    split_seed: int = opt(0, "seed of the train/validation split (and of --mix); kept apart from --seed so runs "
                             "with different seeds are judged on the same held-out tweets")
    on_bad: str = opt("error", "bad data rows: 'error' stops with file:line and reason; 'skip' drops them and "
                               "writes them with reasons to the run folder", choices=("error", "skip"))
    max_len: int | None = opt(None, "longest example in tokens (prompt is cut first). Default: min(256, context)")
    # LoRA and memory (minisft/lora.py, minisft/memory.py)
    lora_rank: int = opt(0, "LoRA: train a rank-R update beside each frozen target matrix instead of every weight "
                            "(0 = full fine-tuning). The checkpoints are plain GPT-2 folders with the update merged in")
    lora_alpha: float = opt(32.0, "LoRA: the update is scaled by alpha / rank")
    lora_dropout: float = opt(0.05, "LoRA: dropout on the adapters' input")
    lora_targets: str = opt("attn+mlp", "LoRA: which matrices get adapters: attention (c_attn, c_proj), or also the "
                                        "MLP's (c_fc, c_proj)", choices=("attn", "attn+mlp"))
    base_dtype: str = opt("fp32", "LoRA: store the frozen base matrices in bf16 (half their memory)",
                          choices=("fp32", "bf16"))
    activation_checkpointing: bool = opt(False, "keep only each block's input and recompute its insides in "
                                                "backward: far less activation memory for one more forward pass")
    keep_freed_memory: bool = opt(False, "CPU (glibc): keep the memory each step frees for the next one instead of "
                                         "handing it back: no page faults on fresh memory; measured at 124M bf16: "
                                         "up to 1.1x tokens/s for 1.05-1.08x peak memory (memory.keep_freed_memory)")
    plan: bool = opt(False, "print the memory and time plan of the run and exit, before loading any weights")
    # where it goes
    out: str = opt("runs", "folder that holds the run folders")
    name: str | None = opt(None, "run folder name (default: <model>-<weights>-<timestamp>)")
    # how long and how fast
    epochs: float | None = opt(None, "passes over the training data (fractions allowed). Default: 6 for tiny, which "
                                     "learns from scratch; 3 for a pretrained GPT-2")
    max_steps: int | None = opt(None, "stop after this many optimizer steps (overrides --epochs)")
    batch_size: int = opt(16, "examples per micro-batch (per process)")
    grad_accum: int = opt(1, "micro-batches per optimizer step: the step sees batch_size * grad_accum examples")
    lr: float | None = opt(None, "peak learning rate (default: 2e-3 for tiny, from scratch; 5e-5 for pretrained GPT-2)")
    warmup: int | None = opt(None, "linear warm-up steps before the cosine decay (default: 5%% of the steps)")
    min_lr_ratio: float = opt(0.1, "the cosine decays to this fraction of --lr")
    weight_decay: float = opt(0.1, "AdamW weight decay, on 2-D weight matrices only")
    grad_clip: float = opt(1.0, "clip the global gradient norm to this (0 = off)")
    dropout: float | None = opt(None, "dropout rate for embeddings, attention and residual branches (default: the "
                                      "model's own: 0.1 for GPT-2, 0 for tiny)")
    seed: int = opt(0, "seed for initialisation, data order and sampling")
    tiny_vocab: int = opt(4096, "vocabulary size of the tiny model's tokenizer (trained on the training texts)")
    # checking in
    eval_every: int = opt(100, "validation loss and sample tweets every N steps (0 = only at the end)")
    eval_samples: int = opt(3, "sample tweets for fixed validation instructions at each evaluation")
    final_eval: int = opt(50, "at the end, score K=4 tweets for each of this many held-out instructions "
                              "(python -m minisft.evaluate; 0 = skip)")
    save_every: int = opt(200, "checkpoint every N steps (0 = only at the end)")
    keep_last: int = opt(2, "keep the N newest checkpoints (0 = keep all)")
    resume: str | None = opt(None, "continue a run exactly where it stopped: a run folder, or 'latest'")
    stop_after: int | None = opt(None, "stop (with a checkpoint) after N steps of this invocation, as if "
                                       "interrupted: the run stays resumable")
    # hardware and tracking
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps")
    dtype: str = opt("auto", "compute precision: auto (bf16 autocast on GPUs that have it, fp16 + loss scaling on "
                             "older GPUs; on CPUs with bf16 units bf16 for GPT-2 sizes and fp32 for tiny; else "
                             "fp32), fp32, bf16, fp16", choices=("auto", "fp32", "bf16", "fp16"))
    compile: bool = opt(False, "torch.compile the model (checkpoints are still saved from the plain module)")
    fast_head: bool = opt(True, "the loss's speed machinery (minisft/fast_head.py): logits only at target positions, "
                                "in chunks, the tied embedding's gradient summed in place. --no-fast-head computes "
                                "the textbook loss from full logits: the same numbers, more memory and time")
    wandb: str = opt("auto", "Weights & Biases: auto (online when logged in, else offline to sync later), online, "
                             "offline, disabled", choices=("auto", "online", "offline", "disabled"))
    wandb_project: str = opt("minisft", "W&B project name")
    progress: bool = opt(True, "show a progress bar (--no-progress for logs)")

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(Path(path).read_text()).items() if k in known})


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" unless there is no default or the help text already explains it."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Supervised fine-tuning of GPT-2 on instruction -> tweet pairs, with engagement-weighted loss.",
        formatter_class=HelpFormatter,
        epilog="Example: python train.py --weights log    (then: python sample.py --prompt '...')")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=meta["help"])
            continue
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
        p.add_argument(flag, type=kind, default=f.default, **meta)
    return p


def parse_args(argv=None) -> tuple[TrainConfig, set[str]]:
    """The config, and the names of the flags the user actually typed (resume keeps the saved value otherwise)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {f.name for f in fields(TrainConfig) if getattr(args, f.name) != f.default}
    cfg = TrainConfig(**vars(args))
    problem = check(cfg)
    if problem:
        parser.error(problem)
    cfg.weights = weight_scheme(cfg)  # the run's config names the scheme it used, not "auto"
    return cfg, given


def check(cfg: TrainConfig) -> str | None:
    """Bad flag combinations fail here, before any model or data is loaded."""
    if cfg.batch_size < 1 or cfg.grad_accum < 1:
        return "--batch-size and --grad-accum must be at least 1"
    if cfg.lr is not None and cfg.lr <= 0:
        return "--lr must be positive"
    if cfg.epochs is not None and cfg.epochs <= 0 and cfg.max_steps is None:
        return "--epochs must be positive (or give --max-steps)"
    if cfg.max_steps is not None and cfg.max_steps < 1:
        return "--max-steps must be at least 1"
    if not 0 < cfg.val_fraction < 1:
        return "--val-fraction must be between 0 and 1"
    if cfg.max_weight < 1:
        return "--max-weight must be at least 1 (weights have mean 1)"
    if weight_scheme(cfg) == "none" and cfg.max_weight != DEFAULT_MAX_WEIGHT:
        return "--max-weight has no effect with --weights none"
    if cfg.lora_rank < 0 or cfg.lora_alpha <= 0 or not 0 <= cfg.lora_dropout < 1:
        return "--lora-rank must be >= 0, --lora-alpha > 0 and --lora-dropout in [0, 1)"
    if cfg.base_dtype != "fp32" and not cfg.lora_rank:
        return "--base-dtype bf16 stores a LoRA base: give --lora-rank too (full fine-tuning keeps float32 weights)"
    if not 0 <= cfg.condition_dropout < 1:
        return "--condition-dropout must be in [0, 1)"
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        return "--dropout must be in [0, 1)"
    if cfg.dtype == "fp16" and cfg.device == "cpu" and cfg.compile:
        return "--dtype fp16 with --compile is not supported on CPU"
    if cfg.warmup is not None and cfg.max_steps is not None and cfg.warmup >= cfg.max_steps:
        return "--warmup must be smaller than --max-steps"
    if cfg.resume and cfg.name:
        return "--resume continues an existing run: don't also give --name"
    if cfg.name is not None and (cfg.name in ("", ".", "..") or Path(cfg.name).name != cfg.name or "\\" in cfg.name):
        return f"--name {cfg.name!r}: must be a plain folder name (no '/', '\\' or '..'): the run goes in --out/NAME"
    if cfg.max_len is not None and cfg.max_len < 2:
        return "--max-len must be at least 2 (a prompt token and the end of the response)"
    for name in ("eval_every", "save_every", "keep_last", "eval_samples", "final_eval"):
        if getattr(cfg, name) < 0:
            return f"--{name.replace('_', '-')} must be >= 0"
    return None


def weight_scheme(cfg: TrainConfig) -> str:
    """--weights auto: log weights, except on a conditioned run (--condition auto included), whose engagement is in
    its prompt instead (the two combine when --weights is given)."""
    if cfg.weights != "auto":
        return cfg.weights
    return "none" if cfg.condition != "none" else "log"


def model_defaults(cfg: TrainConfig) -> None:
    """The defaults that depend on the model (cfg.model is known): learning rate and passes over the data."""
    if cfg.lr is None:
        cfg.lr = 2e-3 if cfg.model == "tiny" else 5e-5  # from scratch vs nudging pre-trained weights
    if cfg.epochs is None:
        # From scratch, the tiny model needs more passes: at 3 it writes on-topic tweets for 21% of held-out prompts,
        # at 6 for 79% (README, "The engagement experiment"); a pretrained GPT-2 is adapted in a few.
        cfg.epochs = 6.0 if cfg.model == "tiny" else 3.0

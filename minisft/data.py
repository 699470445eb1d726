"""From checked records (records.py) to the batches the training loop consumes.

The way through this file, in order:
  encode_example  prompt + response -> input_ids / targets: the shift by one and the loss mask (the SFT core)
  batches         length-grouped, shuffled batches of indices, replayable from (seed, epoch)
  collate         pad one batch into tensors
`encode_records` encodes a list of records with their engagement weights (minisft/weighting.py). The one way from
a file to examples, used by training, evaluate and explain: `load_split` (read once, check, split, mix, fit the
weights) then `encode_split`; `prepare` is both in one call.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from minisft.conditioning import Condition, fit_condition, resolve_condition, with_bucket
from minisft.config import TrainConfig, weight_scheme
from minisft.loss import IGNORE
from minisft.records import DataError, LoadStats, load_records, mix_records, split_records
from minisft.templates import format_prompt, response_text
from minisft.weighting import EngagementWeights, fit_weights

# ------------------------------------------------------------------------------------- the shift and the mask

@dataclass
class Example:
    input_ids: list[int]  # what the model reads, length T <= max_len
    targets: list[int]  # targets[t] = the token that should follow input_ids[t], or IGNORE: also length T
    weight: float = 1.0  # engagement weight: multiplies this example's token losses
    id: str = ""  # the record it came from


@dataclass
class EncodeStats:
    encoded: int = 0
    truncated: int = 0  # prompt cut from the left to fit max_len
    dropped: int = 0  # response + end-of-text alone longer than max_len: skipped


def encode_example(tok, prompt: str, response: str, max_len: int, train_on_prompt: bool = False,
                   stats: EncodeStats | None = None) -> Example | None:
    """Tokens and targets of one example; None when even the response alone doesn't fit (counted in stats).

    max_len is the longest sequence the model reads (at most its context). The whole text is one token longer,
    because of the shift by one below.
    """
    stats = stats if stats is not None else EncodeStats()
    # Prompt and response are tokenized SEPARATELY and then joined, so we know exactly which token is the first of
    # the response (tokenizing the joined text could merge characters across the boundary into one token).
    prompt_ids = tok.encode(prompt)
    # The response ends with <|endoftext|>, and predicting it is a target like any other: that is how the model
    # learns to stop after a tweet. Padding later reuses the same id, but padding is never a target (see collate).
    response_ids = tok.encode(response_text(prompt, response)) + [tok.eos_id]
    if not prompt_ids:
        raise ValueError("empty prompt: the first response token needs at least one token before it")
    # Too long? Cut the prompt from the LEFT, keeping its end (the instruction's last words and the "Tweet:" cue
    # right before the answer). The response is what we learn, so it is never cut: if it alone (with at least one
    # prompt token before it) doesn't fit, the example is dropped, and counted.
    room = max_len + 1 - len(response_ids)
    if room < 1:
        stats.dropped += 1
        return None
    if len(prompt_ids) > room:
        prompt_ids = prompt_ids[-room:]
        stats.truncated += 1
    ids = prompt_ids + response_ids
    # THE SHIFT BY ONE. A causal language model predicts the next token: reading input_ids[:t+1], its output at
    # position t is scored against ids[t+1]. So the inputs are all tokens but the last, the targets all but the
    # first, and position t of both lines up:
    #   ids      = p0 p1 p2 r0 r1 <eot>
    #   input    = p0 p1 p2 r0 r1
    #   targets  = p1 p2 r0 r1 <eot>      -> with the mask: -100 -100 r0 r1 <eot>
    input_ids, targets = ids[:-1], ids[1:]
    # THE MASK. Positions whose target is a prompt token get IGNORE (-100): the loss skips them, so the model is
    # not trained to write instructions, only to answer them. The target at position len(prompt)-1 is the first
    # response token: learning starts there. train_on_prompt=True keeps them all (a learner's switch).
    if not train_on_prompt:
        n_prompt_targets = len(prompt_ids) - 1
        targets[:n_prompt_targets] = [IGNORE] * n_prompt_targets
    stats.encoded += 1
    return Example(input_ids, targets)


# ------------------------------------------------------------------------------------------------- batching

def collate(examples: list[Example], pad_id: int) -> dict:
    """Right-pad a batch to its longest example (dynamic padding).

    input_ids [B, T] (pad_id after each example), targets [B, T] (IGNORE after each example: padding is never
    learned, even though pad_id is usually <|endoftext|>), weights [B], n_targets = number of real targets.
    Right padding needs no attention mask for training: in causal attention a real token only looks left, and
    the pads are all to its right.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    B, T = len(examples), max(len(e.input_ids) for e in examples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, e in enumerate(examples):
        input_ids[b, :len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.long)
        targets[b, :len(e.targets)] = torch.tensor(e.targets, dtype=torch.long)
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    return {"input_ids": input_ids, "targets": targets, "weights": weights, "n_targets": int((targets != IGNORE).sum())}


def batches(examples: list[Example], batch_size: int, seed: int, epoch: int, shuffle: bool = True,
            group_by_length: bool = True) -> list[list[int]]:
    """One epoch of batches, as lists of indices into examples; each example exactly once.

    With group_by_length, examples are sorted by length inside chunks of 50 batches, so a batch holds similar
    lengths and little padding; the batch order is then shuffled so training doesn't see short-then-long.
    The order depends only on (seed, epoch): a resumed run replays it and skips the batches already done.
    """
    rng = random.Random(f"batches:{seed}:{epoch}")
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        chunk = 50 * batch_size
        order = [i for start in range(0, len(order), chunk)
                 for i in sorted(order[start:start + chunk], key=lambda i: len(examples[i].input_ids))]
    out = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if shuffle and group_by_length:
        rng.shuffle(out)
    return out


def pad_fraction(batch_list: list[list[int]], examples: list[Example]) -> float:
    """Share of the padded [B, T] positions that are padding: compute spent on nothing."""
    real = total = 0
    for idx in batch_list:
        lengths = [len(examples[i].input_ids) for i in idx]
        real, total = real + sum(lengths), total + max(lengths) * len(lengths)
    return 1 - real / total if total else 0.0


# --------------------------------------------------------------------------------------------- all together

DEFAULT_MAX_LEN = 256  # tokens: a tweet and its prompt fit well within it, and the tiny model's context is 256


def example_length(max_len: int | None, n_positions: int) -> int:
    """--max-len, or by default the shorter of DEFAULT_MAX_LEN and the model's context."""
    return max_len or min(DEFAULT_MAX_LEN, n_positions)


def encode_records(tok, records: list[dict], fmt: str, max_len: int, weigh=None, train_on_prompt: bool = False,
                   buckets: dict | None = None) -> tuple[list[Example], dict]:
    """Encode records under a template's prompt format (templates.py): (examples, counts {encoded, truncated,
    dropped}). weigh: a fitted minisft.weighting.EngagementWeights (record -> weight), or None for weight 1.
    buckets: id -> engagement bucket, whose line goes into that record's prompt (conditioning.py), or None."""
    stats, examples = EncodeStats(), []
    for r in records:
        instruction = with_bucket(r["instruction"], (buckets or {}).get(r["id"]))
        ex = encode_example(tok, format_prompt(fmt, instruction), r["response"], max_len, train_on_prompt, stats)
        if ex is not None:
            ex.id, ex.weight = r["id"], weigh(r) if weigh is not None else 1.0
            examples.append(ex)
    return examples, asdict(stats)


@dataclass
class Split:
    """A run's records, read from its file once: all of them (file order), the training split (after --mix), the
    validation split, the engagement weights and the engagement condition fitted on the training split (None when
    the run is not conditioned; then `buckets` is empty), and the loader's counts."""
    records: list[dict]
    train: list[dict]
    val: list[dict]
    weigh: EngagementWeights
    load: LoadStats
    condition: Condition | None = None
    buckets: dict[str, int] = field(default_factory=dict)  # id -> engagement bucket, for training and validation


@dataclass
class Dataset:
    """A Split encoded for one tokenizer and template: the examples the loop trains and validates on. Validation
    examples have no engagement line; val_bucketed (conditioned runs only) are the same with their true bucket."""
    split: Split
    train: list[Example]
    val: list[Example]
    stats: dict
    val_bucketed: list[Example] = field(default_factory=list)


def load_split(cfg: TrainConfig, rejects_path=None) -> Split:
    """Read once -> check -> split -> mix -> fit the weights, with the run's settings (a TrainConfig)."""
    records, load_stats = load_records(cfg.data, cfg.on_bad, rejects_path)
    train, val = split_records(records, cfg.val_fraction, cfg.split_seed)
    if cfg.mix:
        train = mix_records(train, cfg.mix, cfg.split_seed)
    cfg.condition = resolve_condition(cfg.condition, train)  # auto -> predicted or none, from the data
    split = Split(records, train, val, fit_weights(train, weight_scheme(cfg), cfg.max_weight, cfg.engagement),
                  load_stats)
    if cfg.condition != "none":
        split.condition, split.buckets = fit_condition(train, val, cfg.condition, cfg.engagement,
                                                       cfg.condition_dropout, cfg.seed)
    return split


def encode_split(split: Split, tok, fmt: str, max_len: int, train_on_prompt: bool = False) -> Dataset:
    """-> encode: the training and validation examples, with their weights, and the counts for the log.

    Validation examples carry the same fitted weights, so a weighted validation loss is reported next to the plain
    one, and they always score the response only, even when training also learns the prompt: the question is
    always "how well does it write the tweet for this instruction?", so runs stay comparable.
    """
    lines = {}  # training examples: their bucket's line, but for the --condition-dropout share
    if split.condition is not None:
        lines = {i: b for i, b in split.buckets.items() if split.condition.keeps_line(i)}
    train, train_enc = encode_records(tok, split.train, fmt, max_len, split.weigh, train_on_prompt, lines)
    val, val_enc = encode_records(tok, split.val, fmt, max_len, split.weigh, train_on_prompt=False)
    val_bucketed = []
    if split.condition is not None:
        val_bucketed, _ = encode_records(tok, split.val, fmt, max_len, split.weigh, False, split.buckets)
    if not train:
        raise DataError(f"no training examples ({split.load.kept} records kept, {len(split.train)} in the training "
                        f"split, {train_enc['dropped']} too long for max_len={max_len})")
    w = np.array([ex.weight for ex in train])
    stats = {**asdict(split.load), "train_records": len(split.train), "val_records": len(split.val),
             "train_examples": len(train), "val_examples": len(val),
             "truncated": train_enc["truncated"] + val_enc["truncated"],
             "dropped": train_enc["dropped"] + val_enc["dropped"],
             "train_sources": dict(Counter(str(r.get("source")) for r in split.train)),
             "train_target_tokens": sum(sum(t != IGNORE for t in ex.targets) for ex in train),
             "weights": split.weigh.scheme, "weight_min": float(w.min()), "weight_max": float(w.max()),
             "weights_missing": sum(split.weigh.score(r) is None for r in split.train),
             "conditioned_examples": len(lines)}
    return Dataset(split, train, val, stats, val_bucketed)


def prepare(cfg: TrainConfig, tok, fmt: str, max_len: int, rejects_path=None) -> Dataset:
    """The whole way from the file to examples, for a tokenizer that already exists: load_split, then encode_split.
    (Training a tiny model runs the two steps itself: its tokenizer learns from the training split in between.)"""
    return encode_split(load_split(cfg, rejects_path), tok, fmt, max_len, cfg.train_on_prompt)

"""Engagement-conditioned SFT: the prompt says how well the tweet did, and at sampling time we ask for the best.

Plain SFT learns the average tweet of its data. Weighting (weighting.py) tilts that average towards the tweets that
did well, but only by re-mixing the data: the model still writes one average. Conditioning keeps every example
at weight 1 and instead adds one line to its prompt, the example's engagement bucket:

    Instruction: Write a tip about Python.
    Engagement: top 20%
    Tweet: <the response>

so the model learns what tweets of each bucket look like, side by side, and sampling asks for `top 20%` (the idea
of SteerLM, Dong et al. 2023, and of "decision transformer"-style return conditioning). Three details matter:

  - The line is part of the prompt, so it is masked like the rest (data.encode_example): the model is never
    trained to write it, only to answer it.
  - --condition-dropout (0.1) leaves the line out of that share of training examples, deterministically by id: the
    model keeps an unconditioned mode, and prompts without a line still work.
  - What the bucket measures (--condition): `observed` is the example's own engagement signal (weighting.py, raw
    or relative to its author). But observed likes are a noisy label of what the wording earned (luck, timing, a
    viral boost). `predicted` is a judge's estimate from the text alone (tweets/predictor.py), cross-fitted: the
    training split is cut into K folds and each fold is scored by a predictor fitted on the other folds, so no
    tweet is labelled by a predictor that saw its own likes. A denoised label of what the wording earns.

Buckets are quintiles of the measure over the training split; their edges are saved with the template of every
checkpoint (template.json), so sampling and evaluation use exactly the buckets training used.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np

from minisft.tweets.predictor import EngagementPredictor
from minisft.weighting import EngagementSignal

MEASURES = ("none", "observed", "predicted")
AUTO_MIN = 100  # --condition auto: predicted when at least this many training records carry engagement, else none
BUCKETS = ("bottom 20%", "20-40%", "40-60%", "60-80%", "top 20%")
LINE = "Engagement: {}"
FOLDS = 5


@dataclass
class Condition:
    measure: str  # observed | predicted
    signal: str  # raw | relative: the engagement signal the bucket measures (weighting.EngagementSignal)
    edges: list[float]  # the 4 quintile edges of the measure over the training split
    dropout: float  # share of training examples without the line
    seed: int  # which examples those are

    def bucket(self, value: float) -> int:
        """0 (bottom 20%) .. 4 (top 20%)."""
        return int(np.searchsorted(self.edges, value, side="right"))

    def keeps_line(self, record_id: str) -> bool:
        """Whether this training example gets its line: the same answer in every run with the same seed."""
        u = int(hashlib.sha256(f"condition:{self.seed}:{record_id}".encode()).hexdigest()[:8], 16) / 2**32
        return u >= self.dropout

    def to_dict(self) -> dict:
        return {**asdict(self), "buckets": list(BUCKETS), "line": LINE}

    @classmethod
    def from_dict(cls, d: dict) -> "Condition":
        return cls(d["measure"], d["signal"], list(d["edges"]), d["dropout"], d["seed"])


def with_bucket(instruction: str, bucket: int | None) -> str:
    """The instruction with its engagement line (bucket None: the instruction alone)."""
    return instruction if bucket is None else f"{instruction}\n{LINE.format(BUCKETS[bucket])}"


def parse_bucket(name: str) -> int | None:
    """--engagement-bucket: top | bottom | none | one of BUCKETS ("60-80%", or without the %)."""
    name = name.strip().lower().removesuffix("%")
    if name == "none":
        return None
    named = {"top": 4, "bottom": 0, **{b.lower().removesuffix("%").removesuffix(" 20"): i for i, b in
                                        enumerate(BUCKETS)}}
    if name not in named:
        raise ValueError(f"unknown engagement bucket {name!r}: top, bottom, none, 20-40, 40-60 or 60-80")
    return named[name]


def ask_bucket(name: str, condition: dict | None) -> int | None:
    """The bucket sampling asks for: "auto" is the top one for a conditioned model and none otherwise."""
    if name == "auto":
        return len(BUCKETS) - 1 if condition else None
    asked = parse_bucket(name)
    if asked is not None and condition is None:
        raise ValueError(f"--engagement-bucket {name}: this model was not trained with --condition")
    return asked


def measure_values(train: list[dict], others: list[dict], measure: str, signal: str) -> dict[str, float]:
    """id -> the measure, for the training records and the others (validation), log-scaled.

    observed: log of the example's engagement signal (None when it has no metrics).
    predicted: a text predictor's estimate of that log signal; cross-fitted on the training split (fold k scored by
    a predictor fitted on the other folds), and for the others by one fitted on the whole training split.
    """
    x = EngagementSignal.fit(train, "linear", signal)  # "linear": the signal itself, 1 + e (or relative)

    def target(r):
        v = x(r)
        return None if v is None else math.log(v)

    if measure == "observed":
        return {r["id"]: y for r in train + others if (y := target(r)) is not None}
    fold = {r["id"]: int(hashlib.sha256(str(r["id"]).encode()).hexdigest()[:8], 16) % FOLDS for r in train}
    values = {}
    for k in range(FOLDS):
        scored = [r for r in train if fold[r["id"]] == k]
        fitted = EngagementPredictor.fit([r for r in train if fold[r["id"]] != k], target=target)
        values.update(zip((r["id"] for r in scored), predict(fitted, scored)))
    values.update(zip((r["id"] for r in others), predict(EngagementPredictor.fit(train, target=target), others)))
    return values


def predict(predictor: EngagementPredictor, records: list[dict]) -> list[float]:
    return predictor.predict_log([r["response"] for r in records], [r.get("topic") for r in records]).tolist()


def resolve_condition(measure: str, train: list[dict]) -> str:
    """--condition auto -> predicted when the training split has engagement to learn from, else none (said once)."""
    if measure != "auto":
        return measure
    n = sum(r.get("likes") is not None or r.get("comments") is not None for r in train)
    if n >= AUTO_MIN:
        return "predicted"
    print(f"--condition auto: {n} training records have likes or comments (fewer than {AUTO_MIN}): training without "
          "the engagement line")
    return "none"


def fit_condition(train: list[dict], val: list[dict], measure: str, signal: str, dropout: float,
                  seed: int) -> tuple[Condition, dict[str, int]]:
    """The condition fitted on the training split, and id -> bucket for every training and validation record
    that has one (a record without metrics has no observed bucket: its prompt gets no line)."""
    if measure not in MEASURES[1:]:
        raise ValueError(f"unknown condition measure {measure!r}: observed or predicted")
    values = measure_values(train, val, measure, signal)
    in_train = [values[r["id"]] for r in train if r["id"] in values]
    if len(in_train) < len(BUCKETS):
        raise ValueError(f"--condition {measure}: only {len(in_train)} training records have engagement: too few "
                         "to cut into quintiles")
    condition = Condition(measure, signal, np.quantile(in_train, [0.2, 0.4, 0.6, 0.8]).tolist(), dropout, seed)
    return condition, {i: condition.bucket(v) for i, v in values.items()}

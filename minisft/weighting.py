"""Engagement weights: tweets that did well count more in the loss.

Plain SFT treats every example alike. Here each training example gets a weight w, and the loss (minisft/loss.py)
multiplies that example's token losses by w, so the model leans towards what people liked. A weight of 2 acts
like seeing the example twice; a weight of 0.5 like half a copy.

Engagement = likes + comments, summing the metrics the record has (null means the source lacks that metric, so
it is left out rather than counted as 0). A record with neither is "missing". The schemes turn engagement e into
a score; every one is positive, so no tweet vanishes from training with weight 0:

    none    1                                      plain SFT
    linear  1 + e                                  proportional; heavy-tailed, relies on the clip
    sqrt    sqrt(1 + e)
    log     1 + ln(1 + e)                          gentle: 10x the likes is roughly +2.3 in score
    rank    percentile of e in the training split  (0, 1]; ties share their average rank; immune to outliers
    rate    (1 + e) / (1 + impressions)            engagement per view (add-one smoothed);
                                                   missing when impressions are absent or 0

Then, using the training split only (validation must not leak into training choices):
  1. missing scores take the training median score, so a record without metrics weighs like a typical one;
  2. scores are scaled so the weights average exactly 1 over the training split: the loss keeps the scale of
     plain SFT and the learning rate needs no retuning;
  3. weights are capped at max_weight (default 5) with the mean kept at 1 (the others scale up to make room),
     so one viral tweet can't dominate a step.
Every weight is finite and in (0, max_weight].
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

SCHEMES = ("none", "linear", "log", "sqrt", "rank", "rate")
DEFAULT_MAX_WEIGHT = 5.0


def engagement(record: dict) -> int | None:
    """likes + comments, over the metrics the record has; None when it has neither."""
    present = [record.get(k) for k in ("likes", "comments") if record.get(k) is not None]
    return sum(present) if present else None


@dataclass
class EngagementWeights:
    """weights(record) -> float. Made by `fit_weights`; its numbers come from the training split."""

    scheme: str
    max_weight: float = DEFAULT_MAX_WEIGHT
    scale: float = 1.0  # weight = min(scale * score, max_weight)
    fallback: float = 1.0  # the weight of a record whose score is missing (the training median weight)
    ranked: list[int] = field(default_factory=list, repr=False)  # sorted training engagements, for "rank"

    def score(self, record: dict) -> float | None:
        """The unnormalised score of the scheme (see the module docstring), None when the metrics are missing."""
        if self.scheme == "none":
            return 1.0
        e = engagement(record)
        if e is None:
            return None
        if self.scheme == "linear":
            return 1.0 + e
        if self.scheme == "sqrt":
            return math.sqrt(1.0 + e)
        if self.scheme == "log":
            return 1.0 + math.log1p(e)
        if self.scheme == "rank":
            # Average rank of e among the training engagements, as a fraction: ties share the mean of the ranks
            # they occupy; a value not in the training split ranks halfway between its neighbours.
            below, up_to = bisect_left(self.ranked, e), bisect_right(self.ranked, e)
            return (below + up_to + 1) / 2 / len(self.ranked)
        impressions = record.get("impressions")  # scheme == "rate"
        if not impressions:  # None or 0: no views recorded, so no rate (never a division by zero)
            return None
        return (1.0 + e) / (1.0 + impressions)

    def __call__(self, record: dict) -> float:
        s = self.score(record)
        if s is None:
            return self.fallback
        return min(self.scale * s, self.max_weight)


def fit_weights(train_records: list[dict], scheme: str = "none",
                max_weight: float = DEFAULT_MAX_WEIGHT) -> EngagementWeights:
    """Fit the weighting on the training records: mean weight 1 over them, none above max_weight."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown weighting scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    if not max_weight >= 1:
        raise ValueError(f"max_weight must be at least 1 (the weights average 1), got {max_weight}")
    weights = EngagementWeights(scheme, max_weight)
    if scheme == "rank":
        weights.ranked = sorted(e for r in train_records if (e := engagement(r)) is not None)
    scores = [weights.score(r) for r in train_records]
    present = [s for s in scores if s is not None]
    if scheme == "none" or not present:  # nothing to weigh by: every weight is 1
        weights.scheme = "none"
        return weights
    median = statistics.median(present)
    raw = np.array([median if s is None else s for s in scores], dtype=np.float64)
    weights.scale = _scale_under_cap(raw, max_weight)
    weights.fallback = min(weights.scale * median, max_weight)
    return weights


def _scale_under_cap(raw: np.ndarray, cap: float) -> float:
    """The s for which min(s * raw, cap) averages exactly 1 ("water filling").

    Scale everything to mean 1; whatever lands above the cap is pinned at the cap, and the mass it gave up is
    shared out by scaling the rest up; repeat until nothing new crosses the cap (at most len(raw) rounds).
    """
    n, capped = len(raw), np.zeros(len(raw), dtype=bool)
    while True:
        free = ~capped
        if not free.any():  # only possible with cap == 1: every weight is 1
            return cap / raw.min()
        scale = (n - cap * capped.sum()) / raw[free].sum()
        newly = free & (raw * scale > cap)
        if not newly.any():
            return float(scale)
        capped |= newly

"""Engagement weights: tweets that did well count more in the loss.

Plain SFT treats every example alike. Here each training example gets a weight w, and the loss (minisft/loss.py)
multiplies that example's token losses by w, so the model leans towards what people liked. A weight of 2 acts
like seeing the example twice; a weight of 0.5 like half a copy.

Engagement e = likes + comments, summing the metrics the record has (null means the source lacks that metric, so
it is left out rather than counted as 0). A record with neither is "missing". Each scheme turns a positive quantity
x into a score:

    none    1                                      plain SFT
    linear  x                                      proportional; heavy-tailed, relies on the clip
    sqrt    sqrt(x)
    log     1 + ln(x)                              gentle: 10x the likes is roughly +2.3 in score
    rank    percentile of x in the training split  (0, 1]; ties share their average rank; immune to outliers
    rate    x, where x is (1 + e) / (1 + impressions): engagement per view (add-one smoothed); missing when
            impressions are absent or 0
For the other schemes x = 1 + e.

Which engagement (`--engagement`):
    raw       x as above. Raw likes mostly measure the size of the account's audience: a big account's worst
              tweet outscores a small account's best, and no wording can change that.
    relative  x divided by the median x of the same author's training tweets, times the median x of the whole
              training split: how this tweet did for its author, put on the scale of a typical account. An author
              with fewer than 5 training tweets is compared with its source's median, and a record without a
              source with the whole split's. For log, x is floored at 1 (a tweet below 1/median of its author's
              usual counts like one with no engagement).

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
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

SCHEMES = ("none", "linear", "log", "sqrt", "rank", "rate")
SIGNALS = ("raw", "relative")
DEFAULT_MAX_WEIGHT = 5.0
MIN_AUTHOR_TWEETS = 5  # fewer training tweets than this and an author's median is noise: use the source's


def engagement(record: dict) -> int | None:
    """likes + comments, over the metrics the record has; None when it has neither."""
    present = [record.get(k) for k in ("likes", "comments") if record.get(k) is not None]
    return sum(present) if present else None


def quantity(record: dict, scheme: str) -> float | None:
    """The positive number a scheme scores: 1 + e, or for "rate" (1 + e) / (1 + impressions). None if missing."""
    e = engagement(record)
    if e is None:
        return None
    if scheme != "rate":
        return 1.0 + e
    impressions = record.get("impressions")
    return (1.0 + e) / (1.0 + impressions) if impressions else None  # no views recorded: no rate


@dataclass
class EngagementSignal:
    """x(record): the scheme's quantity, raw or relative to the author's usual. Fitted on the training split."""

    scheme: str
    kind: str = "raw"
    medians: dict = field(default_factory=dict)  # ("author", name) / ("source", name) -> median x
    overall: float = 1.0  # median x over the whole training split

    @classmethod
    def fit(cls, train_records: list[dict], scheme: str, kind: str = "raw") -> "EngagementSignal":
        if kind not in SIGNALS:
            raise ValueError(f"unknown engagement signal {kind!r}: choose one of {', '.join(SIGNALS)}")
        signal = cls(scheme, kind)
        if kind == "raw":
            return signal
        groups = defaultdict(list)
        for r in train_records:
            if (x := quantity(r, scheme)) is not None:
                groups[("author", r.get("author"))].append(x)
                groups[("source", r.get("source"))].append(x)
                groups["all"].append(x)
        signal.overall = statistics.median(groups.pop("all")) if groups else 1.0
        signal.medians = {key: statistics.median(xs) for key, xs in groups.items()
                          if key[1] is not None and (key[0] == "source" or len(xs) >= MIN_AUTHOR_TWEETS)}
        return signal

    def usual(self, record: dict) -> float:
        """The median x this record is measured against: its author's, else its source's, else the split's."""
        return self.medians.get(("author", record.get("author")),
                                self.medians.get(("source", record.get("source")), self.overall))

    def __call__(self, record: dict) -> float | None:
        x = quantity(record, self.scheme)
        if x is None or self.kind == "raw":
            return x
        return x / self.usual(record) * self.overall


@dataclass
class EngagementWeights:
    """weights(record) -> float. Made by `fit_weights`; its numbers come from the training split."""

    scheme: str
    max_weight: float = DEFAULT_MAX_WEIGHT
    signal: EngagementSignal | None = None
    scale: float = 1.0  # weight = min(scale * score, max_weight)
    fallback: float = 1.0  # the weight of a record whose score is missing (the training median weight)
    ranked: list[float] = field(default_factory=list, repr=False)  # sorted training signals, for "rank"

    def score(self, record: dict) -> float | None:
        """The unnormalised score of the scheme (see the module docstring), None when the metrics are missing."""
        if self.scheme == "none":
            return 1.0
        x = self.signal(record)
        if x is None:
            return None
        if self.scheme == "linear" or self.scheme == "rate":
            return x
        if self.scheme == "sqrt":
            return math.sqrt(x)
        if self.scheme == "log":
            return 1.0 + math.log(max(x, 1.0))
        # rank: the average rank of x among the training signals, as a fraction. Ties share the mean of the ranks
        # they occupy; a value not in the training split ranks halfway between its neighbours.
        below, up_to = bisect_left(self.ranked, x), bisect_right(self.ranked, x)
        return (below + up_to + 1) / 2 / len(self.ranked)

    def __call__(self, record: dict) -> float:
        s = self.score(record)
        if s is None:
            return self.fallback
        return min(self.scale * s, self.max_weight)


def fit_weights(train_records: list[dict], scheme: str = "none", max_weight: float = DEFAULT_MAX_WEIGHT,
                signal: str = "raw") -> EngagementWeights:
    """Fit the weighting on the training records: mean weight 1 over them, none above max_weight."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown weighting scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    if not max_weight >= 1:
        raise ValueError(f"max_weight must be at least 1 (the weights average 1), got {max_weight}")
    weights = EngagementWeights(scheme, max_weight, EngagementSignal.fit(train_records, scheme, signal))
    if scheme == "rank":
        weights.ranked = sorted(x for r in train_records if (x := weights.signal(r)) is not None)
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

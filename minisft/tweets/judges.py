"""Engagement judges: who says how many likes a tweet would get.

  oracle      the synthetic set's own engagement model (datagen.expected_engagement). Exact, and usable only for
              records the generator made (`is_synthetic`): it knows nothing of your topics or your audience.
  predictor   a ridge regression on simple text features (predictor.py), fitted on training records that have
              likes. Its held-out R^2 travels with it: near 0 means its numbers mean little.
  none        no judge (too few records with likes): expected likes are None, and every report says so.

A Judge is a name, a function (text, record) -> expected likes or None, and notes for the reports. The training
loop's sample tweets, `evaluate` and `report` all get their judge from `grader()`, so a user's own topics, styles,
sources and authors never reach the oracle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from minisft.tweets.datagen import SOURCES, expected_engagement
from minisft.tweets.predictor import EngagementPredictor, PredictorError
from minisft.tweets.topics import TOPICS


@dataclass
class Judge:
    name: str  # "oracle" | "predictor" | "none"
    score: Callable[[str, dict], float | None]  # (tweet text, the record it answers) -> expected likes
    info: dict = field(default_factory=dict)  # for the reports: the predictor's R^2, or why there is no judge

    def scores(self, texts: list[str], records: list[dict]) -> list[float | None]:
        return [self.score(t, r) for t, r in zip(texts, records)]


def is_synthetic(record: dict) -> bool:
    """A record of the shipped synthetic set (made by minisft.tweets.datagen), whose engagement model we know."""
    return (str(record.get("id", "")).startswith("syn-") and record.get("source") in SOURCES
            and record.get("topic") in TOPICS)


def oracle() -> Judge:
    """The generator's engagement model, scored with the ASKED topic and source and the style read from the text."""
    def score(text, record):
        return expected_engagement(text, topic=record["topic"], style=None, source=record["source"])
    return Judge("oracle", score)


def no_judge(reason: str) -> Judge:
    return Judge("none", lambda text, record: None, {"judge_note": reason})


def predictor(records: list[dict], held_out: list[dict] | None = None) -> Judge:
    """A ridge predictor fitted on `records` (its R^2 on `held_out` reported), or no judge when it can't be fitted."""
    try:
        fitted = EngagementPredictor.fit(records)
    except PredictorError as e:
        return no_judge(str(e))

    def score(text, record):
        return float(fitted.predict_likes([text], [record.get("topic")])[0])
    info = {"predictor_r2": fitted.r2(held_out) if held_out else None, "predictor_train_r2": fitted.r2(records),
            "predictor_records": fitted.n_train}
    return Judge("predictor", score, info)


def grader(train: list[dict], val: list[dict], quiet: bool = False) -> Judge:
    """The judge that grades a run's tweets: the oracle when every record is synthetic, else a predictor fitted
    on the training split and checked on the validation split, else none (with a note on stderr)."""
    if train and all(is_synthetic(r) for r in train + val):
        return oracle()
    judge = predictor(train, val)
    if judge.name == "none" and not quiet:
        print(f"note: no expected engagement: {judge.info['judge_note']}", file=sys.stderr)
    return judge


def describe(judge: Judge) -> str:
    """One line for the logs: which judge, and how far to trust it."""
    if judge.name == "oracle":
        return "the synthetic set's engagement oracle"
    if judge.name == "predictor":
        r2 = judge.info.get("predictor_r2")
        return f"a ridge predictor fitted on {judge.info['predictor_records']} training tweets (R^2 on validation " \
               f"{'n/a' if r2 is None else f'{r2:.2f}'})"
    return f"no engagement judge ({judge.info.get('judge_note', 'none asked for')})"

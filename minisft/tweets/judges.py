"""Engagement judges: who says how many likes a tweet would get.

  oracle    the synthetic set's own engagement model (datagen.expected_engagement): the author's audience times
            what the wording earns. Exact, and usable only for records the generator made (`is_synthetic`).
  learned   a ridge regression on simple text features (predictor.py) that predicts how a tweet does for its
            author: log((1 + likes) / the author's usual 1 + likes). Its expected likes for a record are the
            usual of the record's author times the predicted factor, so a generated tweet is graded as if the
            author of the human tweet of the same prompt had posted it. Its held-out R^2 travels with it.
  none      no judge (too few records with likes): expected likes are None, and every report says so.

Two jobs, and one judge must never do both (a judge that picks tweets finds its own blind spots, and grading them
with it again would count those as wins):
  grader    what evaluate and the reports use: the oracle on synthetic data; on imported data a learned judge
            fitted on one half of the training split.
  picker    what best-of-n sampling uses to choose among candidates: a learned judge, always. On synthetic data it
            is fitted on the whole training split (the grader is the oracle); on imported data on the other half.
The picker is saved in the run folder at the end of training (judge.json) and reused by sample.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minisft.tweets.datagen import SOURCES, expected_engagement
from minisft.tweets.predictor import EngagementPredictor, PredictorError
from minisft.tweets.topics import TOPICS

JUDGE_FILE = "judge.json"
MIN_AUTHOR_TWEETS = 5  # as in weighting.py: fewer training tweets than this and an author's median is noise


@dataclass
class Judge:
    name: str  # "oracle" | "learned" | "none"
    score: Callable[[str, dict], float | None]  # (tweet text, the record it answers) -> expected likes
    info: dict = field(default_factory=dict)  # for the reports: the predictor's R^2, or why there is no judge

    def scores(self, texts: list[str], records: list[dict]) -> list[float | None]:
        return [self.score(t, r) for t, r in zip(texts, records)]


def is_synthetic(record: dict) -> bool:
    """A record of the shipped synthetic set (made by minisft.tweets.datagen), whose engagement model we know."""
    return (str(record.get("id", "")).startswith("syn-") and record.get("source") in SOURCES
            and record.get("topic") in TOPICS)


def oracle() -> Judge:
    """The generator's engagement model, scored with the ASKED topic, source and author (the audience), and the
    style read from the text."""
    def score(text, record):
        return expected_engagement(text, topic=record["topic"], style=None, source=record["source"],
                                   author=record.get("author"))
    return Judge("oracle", score)


def no_judge(reason: str) -> Judge:
    return Judge("none", lambda text, record: None, {"judge_note": reason})


# ------------------------------------------------------------------------------------------- the learned judge

@dataclass
class Usual:
    """The median 1 + likes of an author's training tweets (else its source's, else the split's): what a tweet
    of theirs usually gets."""
    medians: dict  # "author:<name>" / "source:<name>" -> median
    overall: float

    @classmethod
    def fit(cls, records: list[dict]) -> "Usual":
        groups = defaultdict(list)
        for r in records:
            if r.get("likes") is not None:
                for key in (f"author:{r.get('author')}", f"source:{r.get('source')}"):
                    groups[key].append(1.0 + r["likes"])
        every = [1.0 + r["likes"] for r in records if r.get("likes") is not None]
        medians = {k: statistics.median(v) for k, v in groups.items()
                   if not k.endswith(":None") and (k.startswith("source:") or len(v) >= MIN_AUTHOR_TWEETS)}
        return cls(medians, statistics.median(every) if every else 1.0)

    def __call__(self, record: dict) -> float:
        return self.medians.get(f"author:{record.get('author')}",
                                self.medians.get(f"source:{record.get('source')}", self.overall))


@dataclass
class LearnedJudge:
    predictor: EngagementPredictor
    usual: Usual

    def target(self, record: dict) -> float | None:
        """What the predictor learns: log of how this tweet did against its author's usual."""
        return None if record.get("likes") is None else math.log((1.0 + record["likes"]) / self.usual(record))

    def factor(self, texts: list[str], records: list[dict]) -> list[float]:
        """Predicted likes as a multiple of each author's usual (1.0 = a typical tweet of theirs)."""
        return [math.exp(y) for y in self.predictor.predict_log(texts, [r.get("topic") for r in records])]

    def score(self, text: str, record: dict) -> float:
        return max(self.usual(record) * self.factor([text], [record])[0] - 1.0, 0.0)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / JUDGE_FILE
        path.write_text(json.dumps({"predictor": self.predictor.to_dict(), "usual": self.usual.medians,
                                    "overall": self.usual.overall}, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> "LearnedJudge":
        d = json.loads((Path(folder) / JUDGE_FILE).read_text())
        return cls(EngagementPredictor.from_dict(d["predictor"]), Usual(d["usual"], d["overall"]))


def fit_learned(records: list[dict]) -> LearnedJudge:
    """A learned judge on these records (PredictorError when fewer than predictor.MIN_RECORDS have likes)."""
    usual = Usual.fit(records)
    judge = LearnedJudge(None, usual)
    judge.predictor = EngagementPredictor.fit(records, target=judge.target)
    return judge


def as_judge(learned: LearnedJudge, held_out: list[dict] | None, fitted_on: list[dict]) -> Judge:
    r2 = learned.predictor.r2(held_out, learned.target) if held_out else None
    return Judge("learned", learned.score, {"predictor_r2": r2, "predictor_records": learned.predictor.n_train,
                                            "predictor_train_r2": learned.predictor.r2(fitted_on, learned.target)})


# ------------------------------------------------------------------------------------------ grader and picker

def halves(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Two disjoint halves of the training split, by a hash of each record's id (stable across runs)."""
    first = [int(hashlib.sha256(str(r["id"]).encode()).hexdigest()[:8], 16) % 2 == 0 for r in records]
    return [r for r, f in zip(records, first) if f], [r for r, f in zip(records, first) if not f]


def synthetic(train: list[dict], val: list[dict]) -> bool:
    return bool(train) and all(is_synthetic(r) for r in train + val)


def grader(train: list[dict], val: list[dict], quiet: bool = False) -> Judge:
    """The judge that grades a run's tweets: the oracle when every record is synthetic; else a learned judge on
    the second half of the training split (the picker has the first), checked on the validation split; else none."""
    if synthetic(train, val):
        return oracle()
    half = halves(train)[1]
    try:
        return as_judge(fit_learned(half), val, half)
    except PredictorError as e:
        if not quiet:
            print(f"note: no expected engagement: {e}", file=sys.stderr)
        return no_judge(str(e))


def picker(train: list[dict], val: list[dict]) -> LearnedJudge:
    """The judge best-of-n picks with: learned, on the whole training split when the grader is the oracle, else on
    the first half (the grader has the second). PredictorError when there are too few likes."""
    return fit_learned(train if synthetic(train, val) else halves(train)[0])


def save_picker(run_dir: Path, train: list[dict], val: list[dict]) -> None:
    """Fit the run's picker and save it as run_dir/judge.json (training does, when a run starts)."""
    try:
        picker(train, val).save(run_dir)
    except PredictorError as e:
        print(f"note: no judge for best-of-n sampling: {e}", file=sys.stderr)


def load_picker(folder: Path) -> LearnedJudge:
    """The picker a run saved (judge.json in the run folder; a checkpoint folder finds its run's)."""
    folder = Path(folder)
    run = folder.parent.parent if folder.parent.name == "checkpoints" else folder
    if not (run / JUDGE_FILE).is_file():
        raise FileNotFoundError(f"{run} has no {JUDGE_FILE}: best-of-n needs the judge that training saves in the "
                                "run folder (a run with too few training tweets with likes has none)")
    return LearnedJudge.load(run)


def describe(judge: Judge) -> str:
    """One line for the logs: which judge, and how far to trust it."""
    if judge.name == "oracle":
        return "the synthetic set's engagement oracle"
    if judge.name == "learned":
        r2 = judge.info.get("predictor_r2")
        return (f"a ridge predictor fitted on {judge.info['predictor_records']} training tweets (R^2 on validation "
                f"{'n/a' if r2 is None else f'{r2:.2f}'})")
    return f"no engagement judge ({judge.info.get('judge_note', 'none asked for')})"

"""The engagement experiment of the README: which lever makes the model write tweets that earn more likes?

    python experiments/engagement.py                      # runs/engagement: 5 trained arms x 3 seeds, 2 best-of-8
    python experiments/engagement.py --out runs/e --seeds 0 --parallel 1    # a smaller look

Every arm is the tiny model trained at the default length of `python train.py --weights log` (6 epochs of the
tiny model) and evaluated by the same harness (the first 50 held-out instructions x 4 tweets, the oracle as the
grader):

  none            --weights none: plain SFT, the baseline
  log             --weights log: weights by raw likes + comments
  log-relative    --weights log --engagement relative: weights by how a tweet did for its author
  cond-observed   --condition observed --engagement relative: the bucket of the tweet's own relative engagement
  cond-predicted  --condition predicted --engagement relative: the bucket a cross-fitted text judge predicts
  <cond>-bo8      the better conditioned arm, each tweet the best of 8 by the run's learned picker
  none-bo8        none, each tweet the best of 8

Training runs go `--parallel` at a time (one thread each), and an arm whose eval.json exists is not run again, so
an interrupted experiment resumes. At the end the script writes OUT/table.md: per arm, over the seeds,
expected likes (mean, median, and the arm / none ratio with a 95% bootstrap interval over prompts), the per-prompt
win rate against none, likes against the human tweets, on-topic, novelty, distinct-2 and hook share each beside
the human value, and the validation losses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from minisft.config import TrainConfig  # noqa: E402
from minisft.data import load_split  # noqa: E402
from minisft.evaluate import evaluate_run  # noqa: E402
from minisft.report import per_prompt_likes, win_rate  # noqa: E402
from minisft.tweets import judges  # noqa: E402
from minisft.tweets.datagen import wording_lift  # noqa: E402

NONE = ["--condition", "none", "--engagement", "raw"]  # every arm names all three levers: defaults change
ARMS = {"none": ["--weights", "none", *NONE],
        "log": ["--weights", "log", *NONE],
        "log-relative": ["--weights", "log", "--condition", "none", "--engagement", "relative"],
        "cond-observed": ["--weights", "none", "--condition", "observed", "--engagement", "relative"],
        "cond-predicted": ["--weights", "none", "--condition", "predicted", "--engagement", "relative"]}
BEST_OF = 8
EVAL = dict(num_prompts=50, k=4)


def train(out: Path, arm: str, seed: int, extra: list[str]) -> Path:
    run = out / f"{arm}-s{seed}"
    if (run / "eval.json").is_file():
        return run  # done in an earlier invocation
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "train.py"), "--model", "tiny", *ARMS[arm], "--seed", str(seed),
           "--out", str(out), "--name", run.name, "--wandb", "disabled", "--no-progress",
           "--final-eval", str(EVAL["num_prompts"]), *extra]
    log = open(out / f"{run.name}.log", "w")
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


def best_of(run: Path) -> Path:
    """A copy of `run` evaluated with each tweet the best of BEST_OF candidates (the copy keeps its own eval.json)."""
    copy = run.with_name(run.name.replace("-s", f"-bo{BEST_OF}-s"))
    if not (copy / "eval.json").is_file():
        shutil.copytree(run, copy, dirs_exist_ok=True)
        evaluate_run(copy, best_of=BEST_OF, quiet=True, **EVAL)
    return copy


def ratio_interval(arm: list[dict], base: list[dict], resamples: int = 2000) -> tuple[float, float, float]:
    """The arm's mean expected likes over the baseline's, over the prompts both were evaluated on (each prompt's
    mean over the seeds' tweets), with a 95% percentile-bootstrap interval from resampling the prompts."""
    def per_prompt(runs):
        pooled = {}
        for run in runs:
            for i, x in run["per_prompt"].items():
                pooled.setdefault(i, []).append(x)
        return {i: statistics.fmean(xs) for i, xs in pooled.items()}

    a, b = per_prompt(arm), per_prompt(base)
    ids = sorted(a.keys() & b.keys())
    rng = random.Random(0)
    boot = []
    for _ in range(resamples):
        pick = rng.choices(ids, k=len(ids))
        boot.append(sum(a[i] for i in pick) / sum(b[i] for i in pick))
    boot.sort()
    return sum(a[i] for i in ids) / sum(b[i] for i in ids), boot[int(0.025 * resamples)], boot[int(0.975 * resamples)]


def spearman(a, b) -> float:
    """Rank correlation (ties broken by order: the values here are continuous)."""
    ra, rb = (np.argsort(np.argsort(np.asarray(x))) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def judge_check(data: str | None) -> str:
    """How well the picker (the learned judge best-of-n uses) reads what the wording earns: its score of each held-out
    human tweet against the oracle's wording lift of it (datagen.wording_lift, audience left out)."""
    split = load_split(TrainConfig(data=data) if data else TrainConfig())
    picker = judges.picker(split.train, split.val)
    scores = picker.factor([r["response"] for r in split.val], split.val)
    lifts = [wording_lift(r["response"], r["topic"]) for r in split.val]
    r2 = picker.predictor.r2(split.val, picker.target)
    return (f"The picker on the {len(split.val)} held-out human tweets: Spearman {spearman(scores, lifts):.2f} with "
            f"the oracle's wording lift, R^2 {r2:.2f} on their relative log likes.")


def load(run: Path) -> dict:
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in history if "val/loss" in r][-1]
    return {"name": run.name, "m": metrics, "val": last_val, "per_prompt": per_prompt_likes(run / "eval_samples.jsonl")}


def cell(values: list, digits: int = 2) -> str:
    xs = [v for v in values if v is not None]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.fmean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def table(groups: dict[str, list[dict]]) -> str:
    """The README's table: one row per arm, mean ± std over its seeds."""
    base = groups["none"]
    head = ("| arm | expected likes | median | vs none [95% interval] | win rate vs none | vs human | on topic (human) "
            "| novel (human) | distinct-2 (human) | hook share (human) | val loss (plain) | val loss with the true "
            "bucket |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm, runs in groups.items():
        m = lambda key: [r["m"].get(key) for r in runs]  # noqa: E731
        ratio, low, high = ratio_interval(runs, base)
        wins = [win_rate(r, next(b for b in base if b["name"].endswith(r["name"][-3:]))) for r in runs]
        lines.append(" | ".join([
            f"| `{arm}`", cell(m("eval/expected_likes_mean"), 0), cell(m("eval/expected_likes_median"), 0),
            f"{ratio:.2f}x [{low:.2f}-{high:.2f}]", cell(wins), cell(m("eval/likes_vs_human")),
            f"{cell(m('eval/on_topic'))} ({cell(m('eval/human_on_topic'))})",
            f"{cell(m('eval/novelty'))} ({cell(m('eval/human_novelty'))})",
            f"{cell(m('eval/distinct_2'))} ({cell(m('eval/human_distinct_2'))})",
            f"{cell(m('eval/hook_share'))} ({cell(m('eval/human_hook_share'))})",
            cell([r["val"]["val/loss_unweighted"] for r in runs], 3),
            cell([r["val"].get("val_bucket/loss_unweighted") for r in runs], 3)]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/engagement", help="folder for the runs and table.md")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--parallel", type=int, default=2, help="training runs at a time (one thread each)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="shorter runs for a smoke test (default: train.py's default length)")
    p.add_argument("--data", default=None, help="another data file (default: train.py's)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(arm, seed) for seed in seeds for arm in ARMS]
    with ThreadPoolExecutor(args.parallel) as pool:
        extra = ["--max-steps", str(args.max_steps)] if args.max_steps else []
        extra += ["--data", args.data] if args.data else []
        runs = dict(zip(jobs, pool.map(lambda job: train(out, *job, extra), jobs)))
    groups = {arm: [load(runs[arm, s]) for s in seeds] for arm in ARMS}
    conditioned = max(("cond-observed", "cond-predicted"),
                      key=lambda arm: statistics.fmean(r["m"]["eval/expected_likes_mean"] for r in groups[arm]))
    for arm in (conditioned, "none"):
        groups[f"{arm}-bo{BEST_OF}"] = [load(best_of(runs[arm, s])) for s in seeds]
    text = table(groups) + "\n" + judge_check(args.data) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    print(f"wrote {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

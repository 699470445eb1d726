"""Compare runs: what differs between them, and what it did to the numbers.

    python -m minisft.report runs/a runs/b runs/c                   # -> runs/report/report.md + report.png
    python -m minisft.report runs/w-* --group-seeds --out reports/weights

The table shows only the config keys whose values differ between the runs (the rest is noise to a reader), then
each run's final validation numbers (metrics.jsonl) and its evaluation (eval.json, when `minisft.evaluate` ran).
With --group-seeds, runs whose configs differ only in `seed` (and name) become one row of mean +- std, which is
the honest way to read a small difference: if it is smaller than the spread across seeds, it is not a difference.
The PNG puts the loss curves and the evaluation metrics side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# Bookkeeping, not experimental settings: never a reason for two runs to differ.
IGNORED_KEYS = ("name", "out", "resume", "stop_after", "progress", "wandb", "wandb_project", "device",
                "eval_every", "save_every", "keep_last", "eval_samples")
SEED_KEY = "seed"
# The metric columns of the table, in order: (column, metric name). The names are the same in metrics.jsonl,
# eval.json and W&B: val/... for the validation loss, eval/... for the evaluation of generated tweets.
LOSS_COLUMNS = (("val loss", "val/loss"), ("val loss (unweighted)", "val/loss_unweighted"), ("val ppl", "val/ppl"))
EVAL_COLUMNS = (("expected likes", "eval/expected_likes_mean"), ("likes median", "eval/expected_likes_median"),
                ("likes / human", "eval/likes_vs_human"),
                ("within 280", "eval/within_280"), ("ended", "eval/ended"), ("distinct-1", "eval/distinct_1"),
                ("distinct-2", "eval/distinct_2"), ("repeated 3-gram", "eval/repeated_3gram"),
                ("novel", "eval/novelty"),
                ("on topic", "eval/on_topic"), ("predictor R2", "eval/predictor_r2"))
SHARE_KEYS = ("eval/within_280", "eval/ended", "eval/distinct_1", "eval/distinct_2", "eval/repeated_3gram",
              "eval/novelty", "eval/on_topic")


class ReportError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------- reading runs

def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ReportError(f"{path}:{line_no}: invalid JSON: {e.msg}") from None
    return rows


def load_run(run_dir) -> dict:
    """{name, config, history (metrics.jsonl rows), final (last val metrics), eval (eval.json metrics or {})}."""
    run_dir = Path(run_dir)
    config_path, metrics_path = run_dir / "run_config.json", run_dir / "metrics.jsonl"
    if not config_path.is_file():
        raise ReportError(f"{run_dir}: not a run folder (no run_config.json)")
    config = json.loads(config_path.read_text())
    history = read_jsonl(metrics_path) if metrics_path.is_file() else []
    final = {}
    for row in history:  # the last value of each validation metric
        final.update({k: v for k, v in row.items() if k.startswith("val/")})
    eval_path, samples_path = run_dir / "eval.json", run_dir / "eval_samples.jsonl"
    evaluation = json.loads(eval_path.read_text()).get("metrics", {}) if eval_path.is_file() else {}
    return {"name": config.get("name") or run_dir.name, "dir": str(run_dir), "config": config, "history": history,
            "final": final, "eval": evaluation, "per_prompt": per_prompt_likes(samples_path)}


def per_prompt_likes(samples_path: Path) -> dict[str, float]:
    """Record id -> the mean expected likes of the tweets generated for that prompt (eval_samples.jsonl)."""
    if not samples_path.is_file():
        return {}
    likes = {}
    for row in read_jsonl(samples_path):
        if row.get("expected_likes") is not None:
            likes.setdefault(row["id"], []).append(row["expected_likes"])
    return {i: statistics.fmean(xs) for i, xs in likes.items()}


def win_rate(run: dict, baseline: dict) -> float | None:
    """Share of the prompts both runs were evaluated on where this run's tweets have higher expected likes than
    the baseline's (a tie counts half). A mean can rise through a few prompts; a win rate says how many."""
    shared = run["per_prompt"].keys() & baseline["per_prompt"].keys()
    if not shared:
        return None
    a, b = run["per_prompt"], baseline["per_prompt"]
    return sum(1.0 if a[i] > b[i] else 0.5 if a[i] == b[i] else 0.0 for i in shared) / len(shared)


def baseline_for(run: dict, baselines: list[dict]) -> dict:
    """The baseline run with the same seed as `run`, when there is one; else the first."""
    same_seed = [b for b in baselines if b["config"].get(SEED_KEY) == run["config"].get(SEED_KEY)]
    return (same_seed or baselines)[0]


def differing_keys(configs: list[dict], ignore=IGNORED_KEYS) -> list[str]:
    """Config keys whose values are not all equal across the runs (a key missing in one run counts as None)."""
    keys = sorted({k for c in configs for k in c} - set(ignore))
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def metric_values(run: dict) -> dict:
    """The table's numbers of one run: final validation metrics + evaluation metrics, by column name."""
    # The last logged val loss; eval.json's (the same loss, measured again) when metrics.jsonl has none.
    values = {col: run["final"].get(key, run["eval"].get(key)) for col, key in LOSS_COLUMNS}
    values.update({col: run["eval"].get(key) for col, key in EVAL_COLUMNS})
    return values


def seedless(config: dict) -> str:
    """A config without its seed and bookkeeping keys: equal for runs that differ only by --seed."""
    return json.dumps({k: v for k, v in config.items() if k not in IGNORED_KEYS + (SEED_KEY,)}, sort_keys=True)


def group_by_seed(runs: list[dict]) -> list[list[dict]]:
    """Runs whose configs are equal except for the seed (and bookkeeping keys), in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(seedless(run["config"]), []).append(run)
    return list(groups.values())


# ------------------------------------------------------------------------------------------------- the table

def group_label(group: list[dict]) -> str:
    return group[0]["name"] if len(group) == 1 else f"{group[0]['name']} (+{len(group) - 1} seeds)"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _config_cell(v) -> str:
    # settings are shown as typed (lr 5e-05 must not round to 0.000)
    return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _mean_std(values: list) -> str:
    xs = [v for v in values if isinstance(v, (int, float))]
    if not xs:
        return ""
    if len(xs) == 1:
        return _cell(float(xs[0]))
    mean, std = statistics.fmean(xs), statistics.stdev(xs)
    digits = 3 if abs(mean) < 100 else 1  # the std with the mean's precision
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(runs: list[dict], group_seeds: bool = False, baselines: list[dict] | None = None) -> str:
    """One row per run (or per seed group): the differing config keys, then the metrics; with baselines, each run's
    per-prompt win rate against the baseline run of its seed."""
    if group_seeds:
        groups = group_by_seed(runs)
        keys = differing_keys([g[0]["config"] for g in groups], ignore=IGNORED_KEYS + (SEED_KEY,))
    else:
        groups = [[r] for r in runs]
        keys = differing_keys([r["config"] for r in runs])
    metric_cols = [c for c, *_ in LOSS_COLUMNS + EVAL_COLUMNS if any(metric_values(r)[c] is not None for r in runs)]
    header = ["run"] + (["seeds"] if group_seeds else []) + keys + metric_cols
    if baselines:
        header.append(f"win rate vs {baselines[0]['name']}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        cells = [group_label(group)]
        if group_seeds:
            cells.append(",".join(str(r["config"].get(SEED_KEY)) for r in group))
        cells += [_config_cell(group[0]["config"].get(k)) for k in keys]
        cells += [_mean_std([metric_values(r)[c] for r in group]) for c in metric_cols]
        if baselines:
            cells.append(_mean_std([win_rate(r, baseline_for(r, baselines)) for r in group]))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- the figure

def curve(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(row["step"], row[key]) for row in history if key in row and row[key] is not None]
    return [s for s, _ in pts], [v for _, v in pts]


def plot(runs: list[dict], path: Path, group_seeds: bool = False) -> Path:
    """train loss vs step | val loss vs step | quality shares (bars) | expected likes (bars)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display (servers, CI)
    import matplotlib.pyplot as plt
    import numpy as np

    groups = group_by_seed(runs) if group_seeds else [[r] for r in runs]
    labels = [group_label(g) for g in groups]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 4, figsize=(22, 5))
    for ax, key, title in ((axes[0], "train/loss", "train loss"), (axes[1], "val/loss_unweighted", "val loss")):
        for i, group in enumerate(groups):
            for j, run in enumerate(group):
                x, y = curve(run["history"], key)
                if key == "val/loss_unweighted" and not x:
                    x, y = curve(run["history"], "val/loss")
                ax.plot(x, y, color=colors[i % len(colors)], alpha=0.8, marker="o" if len(x) < 30 else None,
                        markersize=3, label=labels[i] if j == 0 else None)
        ax.set(title=title, xlabel="step", ylabel="loss")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)

    def bars(ax, keys, title):
        width = 0.8 / len(groups)
        for i, group in enumerate(groups):
            vals = [[r["eval"].get(k) for r in group] for k in keys]
            means = [np.mean([v for v in vs if v is not None]) if any(v is not None for v in vs) else 0.0
                     for vs in vals]
            stds = [np.std([v for v in vs if v is not None]) if len(group) > 1 and any(v is not None for v in vs)
                    else 0.0 for vs in vals]
            ax.bar(np.arange(len(keys)) + i * width, means, width, yerr=stds if len(group) > 1 else None,
                   color=colors[i % len(colors)], label=labels[i], capsize=2)
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=40, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")

    bars(axes[2], list(SHARE_KEYS), "tweet quality (eval.json)")
    axes[2].set_ylim(0, 1.05)
    bars(axes[3], ["eval/expected_likes_mean", "eval/expected_likes_median", "eval/human_expected_likes_mean"],
         "expected likes")
    if not any(r["eval"] for r in runs):
        for ax in axes[2:]:
            ax.text(0.5, 0.5, "no eval.json:\nrun python -m minisft.evaluate RUN", ha="center", va="center",
                    transform=ax.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------ CLI

def report(run_dirs, out=None, group_seeds: bool = False, baseline=None) -> tuple[str, Path, Path]:
    """Read the runs, write out/report.md and out/report.png; returns (markdown, md path, png path).

    Folders that are not runs (no run_config.json, e.g. the report folder itself under runs/*) are skipped.
    baseline: a run folder; with --group-seeds, the runs with its config (any seed) are the baselines, and each
    run is compared with the one of its own seed.
    """
    runs, skipped = [], []
    for d in run_dirs:
        if (Path(d) / "run_config.json").is_file():
            runs.append(load_run(d))
        else:
            skipped.append(str(d))
    if skipped:
        print(f"skipped (no run_config.json): {', '.join(skipped)}", file=sys.stderr)
    if not runs:
        raise ReportError("no run folder given (a run folder holds run_config.json and metrics.jsonl)")
    out = Path(out) if out else Path(runs[0]["dir"]).parent / "report"
    baselines = None
    if baseline is not None:
        base = load_run(baseline)
        key = seedless(base["config"])
        baselines = [r for r in runs if seedless(r["config"]) == key] if group_seeds else [base]
        baselines = baselines or [base]
    table = markdown_table(runs, group_seeds, baselines)
    md = f"# Run comparison\n\n{table}\n![loss curves and evaluation metrics](report.png)\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(md)
    png = plot(runs, out / "report.png", group_seeds)
    return md, out / "report.md", png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minisft.report", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders to compare")
    p.add_argument("--out", default=None, help="folder for report.md and report.png (default: <runs>/report)")
    p.add_argument("--group-seeds", action="store_true",
                   help="one row per config: runs that differ only by --seed as mean ± std")
    p.add_argument("--baseline", default=None,
                   help="a run folder: add each run's per-prompt win rate of expected likes against it (with "
                        "--group-seeds, against the run of the same seed in the baseline's group)")
    args = p.parse_args(argv)
    try:
        md, md_path, png = report(args.runs, args.out, args.group_seeds, args.baseline)
    except (ReportError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(md)
    print(f"wrote {md_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The run comparison: only the differing config keys, the metrics, seed groups, and a PNG."""

import json

import pytest

from minisft.report import differing_keys, group_by_seed, load_run, main, markdown_table, report

BASE = {"model": "tiny", "data": "data/tweets.jsonl", "weights": "none", "template": "plain", "lr": 0.001,
        "seed": 0, "batch_size": 16, "max_steps": 10, "name": None, "out": "runs", "wandb": "disabled"}


def make_run(root, name, val_loss, likes=None, **config):
    d = root / name
    d.mkdir()
    (d / "run_config.json").write_text(json.dumps({**BASE, "name": name, **config}))
    with open(d / "metrics.jsonl", "w") as f:
        for step in range(1, 11):
            f.write(json.dumps({"step": step, "train/loss": 6.0 - 0.1 * step}) + "\n")
            if step % 5 == 0:
                f.write(json.dumps({"step": step, "val/loss": val_loss + (10 - step) / 10,
                                    "val/loss_unweighted": val_loss + 0.01, "val/ppl": 2.7 ** val_loss}) + "\n")
    if likes is not None:
        metrics = {"expected_likes_mean": likes, "expected_likes_median": likes / 2, "within_280": 0.9,
                   "ended": 0.8, "distinct_1": 0.5, "distinct_2": 0.8, "repeated_3gram": 0.1, "novelty": 1.0,
                   "on_topic": 0.4, "human_expected_likes_mean": 100.0}
        (d / "eval.json").write_text(json.dumps({"metrics": {f"eval/{k}": v for k, v in metrics.items()}}))
    return d


def table_rows(md):
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_two_runs_table_has_only_differing_keys_and_a_png(tmp_path):
    a = make_run(tmp_path, "a", 4.0, likes=120.0, weights="none")
    b = make_run(tmp_path, "b", 3.5, likes=150.0, weights="log", lr=5e-5)
    md, md_path, png = report([a, b], out=tmp_path / "rep")
    header, rows = table_rows(md)
    assert "weights" in header and "lr" in header
    for same in ("model", "template", "batch_size", "seed", "data", "name", "out"):
        assert same not in header
    assert [r["run"] for r in rows] == ["a", "b"]
    assert rows[1]["weights"] == "log" and rows[1]["lr"] == "5e-05"
    assert float(rows[0]["val loss"]) == pytest.approx(4.0)  # the LAST val/loss of metrics.jsonl
    assert float(rows[1]["expected likes"]) == pytest.approx(150.0)
    assert md_path.read_text() == md
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_runs_without_eval_still_compare(tmp_path):
    a = make_run(tmp_path, "a", 4.0, max_steps=10)
    b = make_run(tmp_path, "b", 3.0, max_steps=20)
    md, _, png = report([a, b], out=tmp_path / "rep")
    header, rows = table_rows(md)
    assert "max_steps" in header and "expected likes" not in header
    assert png.exists()


def test_group_seeds_gives_mean_and_std(tmp_path):
    runs = [make_run(tmp_path, f"{w}-s{s}", loss, likes=likes, weights=w, seed=s)
            for w, s, loss, likes in [("none", 0, 4.0, 100.0), ("none", 1, 4.2, 110.0),
                                      ("log", 0, 3.0, 200.0), ("log", 1, 3.4, 220.0)]]
    assert len(group_by_seed([load_run(r) for r in runs])) == 2
    md = markdown_table([load_run(r) for r in runs], group_seeds=True)
    header, rows = table_rows(md)
    assert len(rows) == 2 and "weights" in header and "seed" not in header
    assert rows[0]["seeds"] == "0,1"
    assert rows[1]["val loss"] == "3.200 ± 0.283"
    assert rows[1]["expected likes"] == "210.0 ± 14.1"


def test_differing_keys():
    assert differing_keys([{"a": 1, "b": [1]}, {"a": 1, "b": [2], "c": 0}]) == ["b", "c"]
    assert differing_keys([{"a": 1, "name": "x"}, {"a": 1, "name": "y"}]) == []


def test_cli_skips_non_runs_and_fails_clearly_without_runs(tmp_path, capsys):
    a = make_run(tmp_path, "a", 4.0, weights="none")
    b = make_run(tmp_path, "b", 3.0, weights="rank")
    (tmp_path / "not-a-run").mkdir()
    assert main([str(a), str(b), str(tmp_path / "not-a-run")]) == 0
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "report" / "report.png").exists()
    out = capsys.readouterr()
    assert "| rank |" in out.out.replace("  ", " ") and "not-a-run" in out.err
    assert main([str(tmp_path / "not-a-run")]) == 1
    assert "no run folder" in capsys.readouterr().err


def test_baseline_adds_the_per_prompt_win_rate(tmp_path):
    def samples(run, likes):
        with open(run / "eval_samples.jsonl", "w") as f:
            for i, x in enumerate(likes):
                f.write(json.dumps({"id": f"p{i}", "expected_likes": x}) + "\n")

    base, better = make_run(tmp_path, "base", 2.0, likes=100.0), make_run(tmp_path, "better", 2.0, likes=150.0)
    samples(base, [10, 10, 10, 10])
    samples(better, [20, 5, 10, 30])  # wins 2, loses 1, ties 1 -> (2 + 0.5) / 4
    md, _, _ = report([base, better], tmp_path / "out", baseline=base)
    header, _, base_row, better_row = md.split("\n\n")[1].splitlines()[:4]
    assert header.endswith("| win rate vs base |")
    assert better_row.endswith("| 0.625 |") and base_row.endswith("| 0.500 |")

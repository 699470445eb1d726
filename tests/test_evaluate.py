"""Evaluation end to end on a tiny trained run, the engagement judges, and the W&B sweep file."""

import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from minisft import records as R
from minisft.config import TrainConfig, build_parser, parse_args
from minisft.evaluate import evaluate_run, main
from minisft.templates import TEMPLATES
from minisft.training import main as train_main
from minisft.tweets.datagen import expected_engagement, generate_records
from minisft.tweets.judges import grader

ROOT = Path(__file__).resolve().parents[1]
EVAL = ["--num-prompts", "6", "--k", "2", "--max-new-tokens", "24"]
SHARES = ("within_280", "ended", "distinct_1", "distinct_2", "repeated_3gram", "novelty", "on_topic")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step tiny run on 240 synthetic tweets (a few seconds)."""
    root = tmp_path_factory.mktemp("eval")
    data = root / "tweets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_records(240, seed=1)))
    assert train_main(["--model", "tiny", "--data", str(data), "--out", str(root), "--name", "r", "--max-steps", "3",
                       "--batch-size", "8", "--tiny-vocab", "512", "--max-len", "96", "--eval-every", "0",
                       "--eval-samples", "1", "--val-fraction", "0.1", "--wandb", "disabled", "--no-progress"]) == 0
    return root / "r"


def test_dtype_picks_the_sampling_precision(run, capsys, monkeypatch):
    """auto samples the tiny model as loaded (fp32: its inference precision); --dtype bf16 samples a cast copy
    (prepacked where the CPU allows) and says so in eval.json. Greedy tweets of the two agree on most prompts."""
    import torch

    from minisft import evaluate as E

    model = E.load_model(str(E.checkpoint_folder(run)))
    assert E.sampling_model(model, torch.device("cpu")) is model
    bf16 = E.sampling_model(model, torch.device("cpu"), "bf16")
    assert bf16 is not model and bf16.transformer.wte.weight.dtype == torch.bfloat16
    assert model.transformer.wte.weight.dtype == torch.float32  # a copy: the loaded model is left alone
    texts = {}
    for dtype in ("auto", "bf16"):
        assert main([str(run), *EVAL, "--temperature", "0", "--dtype", dtype]) == 0
        result = json.loads((run / "eval.json").read_text())
        assert result["settings"]["dtype"] == {"auto": "float32", "bf16": "bfloat16"}[dtype]
        texts[dtype] = [json.loads(line)["text"] for line in open(run / "eval_samples.jsonl")]
    same = sum(a == b for a, b in zip(texts["auto"], texts["bf16"]))
    assert len(texts["auto"]) == 12 and same >= 6  # bf16 rounding may flip a late token in a few


def test_cli_writes_every_metric_in_range(run, capsys):
    assert main([str(run), *EVAL]) == 0
    result = json.loads((run / "eval.json").read_text())
    m = result["metrics"]
    assert result["engagement_scorer"] == "oracle" and result["settings"]["k"] == 2
    for key in SHARES:
        assert 0.0 <= m[f"eval/{key}"] <= 1.0, key
        if key != "ended":  # every tweet metric has its human value beside it (humans always "end")
            assert 0.0 <= m[f"eval/human_{key}"] <= 1.0, key
    for key in ("hook_share", "emoji_per_tweet", "mean_chars", "expected_likes_mean"):
        assert m[f"eval/{key}"] is not None and m[f"eval/human_{key}"] is not None, key
    assert m["eval/expected_likes_ci_low"] <= m["eval/expected_likes_mean"] <= m["eval/expected_likes_ci_high"]
    assert m["eval/likes_vs_human"] == pytest.approx(m["eval/expected_likes_mean"] /
                                                     m["eval/human_expected_likes_mean"])
    assert m["eval/tweets"] == 12
    assert m["val/loss"] > 0 and m["val/ppl"] > 1
    assert m["eval/expected_likes_mean"] > 0 and m["eval/expected_likes_median"] > 0
    assert m["eval/human_expected_likes_mean"] > 0
    # the same loss as training: at the run's last step it equals the last val/loss training logged
    logged = [json.loads(line) for line in open(run / "metrics.jsonl")]
    last = [r for r in logged if "val/loss" in r][-1]
    assert m["val/loss"] == pytest.approx(last["val/loss"], rel=1e-5)
    assert m["val/loss_unweighted"] == pytest.approx(last["val/loss_unweighted"], rel=1e-5)
    rows = [json.loads(line) for line in open(run / "eval_samples.jsonl")]
    assert len(rows) == 12
    for key in ("instruction", "topic", "text", "chars", "ended", "expected_likes", "novel", "on_topic"):
        assert all(key in r for r in rows), key
    assert m["eval/expected_likes_mean"] == pytest.approx(statistics.fmean(r["expected_likes"] for r in rows), rel=1e-3)
    assert m["eval/within_280"] == sum(r["chars"] <= 280 for r in rows) / 12
    assert "expected likes (oracle)" in capsys.readouterr().out


def test_same_settings_same_tweets_on_the_validation_split(run):
    a = evaluate_run(run, num_prompts=4, k=2, max_new_tokens=16, quiet=True)
    rows_a = (run / "eval_samples.jsonl").read_text()
    b = evaluate_run(run, num_prompts=4, k=2, max_new_tokens=16, quiet=True)
    assert rows_a == (run / "eval_samples.jsonl").read_text() and a["metrics"] == b["metrics"]
    cfg = TrainConfig.load(run / "run_config.json")
    _, val = R.split_records(R.load_records(cfg.data)[0], cfg.val_fraction, cfg.seed)
    rows = [json.loads(line) for line in rows_a.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in val[:4]] * 2  # held-out prompts, in order, per sample round


def test_imported_data_uses_the_fitted_predictor_and_reports_its_r2(run, tmp_path):
    cfg = TrainConfig.load(run / "run_config.json")
    real = tmp_path / "real.jsonl"  # the same tweets, as if imported: no synthetic ids
    real.write_text("".join(json.dumps({**r, "id": "x" + r["id"][4:]}) + "\n" for r in R.load_records(cfg.data)[0]))
    result = evaluate_run(run, num_prompts=4, k=1, max_new_tokens=16, data=str(real), quiet=True)
    assert result["engagement_scorer"] == "learned"
    assert -1.0 < result["metrics"]["eval/predictor_r2"] <= 1.0
    assert result["metrics"]["eval/expected_likes_mean"] >= 0


def test_oracle_scores_with_the_asked_topic_source_and_author():
    records = generate_records(30, seed=3)
    judge = grader(records[:20], records[20:])
    r = next(x for x in records[20:] if x["source"] != "own")  # an account with an audience of its own
    assert judge.name == "oracle"
    assert judge.score("a tweet 🚀", r) == expected_engagement("a tweet 🚀", topic=r["topic"], source=r["source"],
                                                               author=r["author"])
    assert judge.score("a tweet 🚀", r) != expected_engagement("a tweet 🚀", topic=r["topic"], source=r["source"])


def test_missing_data_file_is_one_clear_error(run, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    config = json.loads((moved / "run_config.json").read_text())
    (moved / "run_config.json").write_text(json.dumps({**config, "data": str(tmp_path / "gone.jsonl")}))
    assert main([str(moved), *EVAL]) == 1
    err = capsys.readouterr().err
    assert "run_config.json" in err and "gone.jsonl" in err and "--data" in err


def test_offline_wandb_gets_a_table_of_scored_tweets(run, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    evaluate_run(run, num_prompts=2, k=1, max_new_tokens=8, wandb="offline", quiet=True)
    tables = list(run.glob("wandb/offline-run-*/files/media/table/eval/samples_*.table.json"))
    assert tables
    columns = json.loads(tables[0].read_text())["columns"]
    assert {"text", "expected_likes", "novel", "on_topic"} <= set(columns)


# ------------------------------------------------------------------------------------------ the sweep file

def test_sweep_file_parses_and_every_parameter_is_a_train_flag():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    sweep = yaml.safe_load((ROOT / "sweep.yaml").read_text())
    assert sweep["program"] == "train.py" and (ROOT / sweep["program"]).exists()
    assert sweep["method"] in ("grid", "random", "bayes")
    assert sweep["metric"] == {"name": "val/loss_unweighted", "goal": "minimize"}
    assert "val/loss_unweighted" in (ROOT / "minisft" / "training.py").read_text()  # a metric training logs
    assert sweep["command"][:3] == ["${env}", "${interpreter}", "${program}"] and "${args}" in sweep["command"]
    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    fixed = [c for c in sweep["command"] if not c.startswith("${")]
    params = sweep["parameters"]
    for name in params:
        assert f"--{name}" in flags, f"sweep parameter {name!r} is not a train.py flag"
    # Every value W&B may pick, passed exactly as the agent passes it, parses as a valid train.py config.
    first = {k: (p["values"][0] if "values" in p else p["min"]) for k, p in params.items()}
    for name, p in params.items():
        for value in p.get("values", [p.get("min"), p.get("max")]):
            picked = {**first, name: value}
            argv = fixed + create_sweep_command_args({"args": {k: {"value": v} for k, v in picked.items()}})["args"]
            cfg, _ = parse_args(argv)
            assert str(getattr(cfg, name)) == str(value)
    for mix in params["mix"]["values"]:
        R.parse_mix(mix)
    assert set(params["template"]["values"]) <= set(TEMPLATES)

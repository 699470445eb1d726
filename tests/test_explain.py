"""The "show me" command (minisft/explain.py): the table it prints is what training computes."""

import ast
import json
import re

import pytest
import torch

from minisft import explain
from minisft.config import TrainConfig
from minisft.loss import IGNORE
from minisft.records import load_records, split_records
from minisft.templates import render_prompt, response_text
from minisft.tokenizer import train_tokenizer
from minisft.training import main as train_main
from minisft.weighting import fit_weights

TOPICS = ["git", "rust", "python", "docker", "testing", "linux"]


def make_records(n=40):
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append({"id": f"t-{i:03d}", "instruction": f"Write a short tweet about {topic}, take {i}.",
                     "response": f"{topic} tip {i}: keep it simple, ship it, and read the docs twice 🚀",
                     "likes": None if i == 3 else (i * 37) % 500, "comments": None if i == 3 else i % 7,
                     "impressions": 1000 + i, "topic": topic, "style": "tip", "source": "own",
                     "created_at": "2024-03-05T14:22:00Z"})
    return rows


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "tweets.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make_records()))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("explain_runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads waited on each other on a shared 2-core machine: 3-4x slower
    try:
        rc = train_main(["--model", "tiny", "--data", str(data_file), "--max-steps", "3", "--batch-size", "8",
                         "--tiny-vocab", "400", "--eval-every", "0", "--eval-samples", "0", "--final-eval", "0",
                         "--wandb", "disabled", "--out", str(out), "--name", "run", "--no-progress",
                         "--weights", "rank"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return out / "run"


def tiny_cfg(data_file, **kw):
    return TrainConfig(model="tiny", data=str(data_file), **kw)


@pytest.mark.parametrize("index", [0, 3])  # 3 has no metrics: it takes the training median weight
def test_known_record_has_the_right_targets_and_weights(data_file, index):
    record, ex, split, _, tok, _ = explain.load_example(tiny_cfg(data_file, weights="log"), index)
    records, _ = load_records(data_file)
    assert record == records[index]
    prompt = render_prompt("plain", record["instruction"])
    prompt_ids, response_ids = tok.encode(prompt), tok.encode(response_text(prompt, record["response"]))
    rows = explain.explain_rows(tok, ex)

    assert [r["id"] for r in rows] == prompt_ids + response_ids  # the input: everything but the final <|eot|>
    is_target = [r["target"] for r in rows]
    # the prompt's own tokens are never targets; every response token and the end-of-text are
    assert is_target == [False] * (len(prompt_ids) - 1) + [True] * (len(response_ids) + 1)
    assert [r["next_id"] for r in rows if r["target"]] == response_ids + [tok.eos_id]
    assert rows[-1]["next_token"] == "<|endoftext|>"
    # the shift by one: each row predicts the token the next row reads
    assert all(a["next_id"] == b["id"] for a, b in zip(rows, rows[1:]))

    train, _ = split_records(records, val_fraction=0.05, seed=0)
    w = fit_weights(train, "log")(record)
    assert split == ("train" if record in train else "validation")
    assert all(r["weight"] == pytest.approx(w) for r in rows if r["target"])
    assert all(r["weight"] == 0.0 for r in rows if not r["target"])
    if index == 3:
        assert w == pytest.approx(fit_weights(train, "log").fallback)


def test_mask_off_and_weights_off_are_the_training_switches(data_file):
    _, ex, _, _, tok, _ = explain.load_example(tiny_cfg(data_file, weights="none", train_on_prompt=True), 0)
    rows = explain.explain_rows(tok, ex)
    assert all(r["target"] for r in rows)
    assert {r["weight"] for r in rows} == {1.0}


def test_printed_table(data_file, capsys):
    assert explain.main(["--id", "t-005", "--data", str(data_file), "--template", "alpaca"]) == 0
    out = capsys.readouterr().out
    record, ex, *_ = explain.load_example(tiny_cfg(data_file, template="alpaca"), record_id="t-005")
    n_target = sum(t != IGNORE for t in ex.targets)
    assert "record t-005" in out and "### Response:\\n'" in out  # the alpaca layout, repr-escaped
    roles = re.findall(r"^ +\d+ .* (target|ignored) ", out, flags=re.M)  # the table's role column
    assert roles == ["target" if t != IGNORE else "ignored" for t in ex.targets]
    assert f"{len(ex.targets) - n_target} ignored" in out and f"{n_target} targets" in out


def test_trained_run_shows_each_target_tokens_loss(trained_run, data_file, capsys):
    assert explain.main(["1", "--model", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "loss (nats)" in out and "weights rank" in out and "SFTObjective: sum w*CE" in out

    cfg = TrainConfig.load(trained_run / "run_config.json")
    from minisft.runs import checkpoint_folder
    record, ex, _, model, tok, _ = explain.load_example(cfg, 1, ckpt=checkpoint_folder(trained_run))
    losses, sums = explain.token_losses(model, tok, ex)
    rows = explain.explain_rows(tok, ex, losses)
    targets = [r for r in rows if r["target"]]
    # the per-token CEs and the loop's loss_sums agree on what the loss is
    assert sums["tokens"] == len(targets)
    assert sum(r["weight"] * r["loss"] for r in targets) == pytest.approx(sums["weighted"], rel=1e-5)
    assert sum(r["loss"] for r in targets) == pytest.approx(sums["nll"], rel=1e-5)
    train, _ = split_records(load_records(data_file)[0], 0.05, 0)
    assert targets[0]["weight"] == pytest.approx(fit_weights(train, "rank")(record))
    assert all(r["loss"] > 0 for r in rows)


def test_a_run_is_explained_with_its_own_settings(trained_run, capsys):
    with pytest.raises(SystemExit):
        explain.main(["0", "--model", str(trained_run), "--weights", "none"])
    assert "--weights" in capsys.readouterr().err


def test_bad_record_is_a_clear_error(data_file, capsys):
    assert explain.main(["999", "--data", str(data_file)]) == 1
    assert "out of range" in capsys.readouterr().err
    assert explain.main(["--id", "nope", "--data", str(data_file)]) == 1
    assert "no record with id 'nope'" in capsys.readouterr().err


def test_token_text_shows_bytes_exactly():
    tok = train_tokenizer(["say hello world\n", "hi 🚀 rocket"] * 5, vocab_size=300)
    text = "hello 🦀\nworld"  # an emoji the tokenizer never saw: byte tokens
    shown = [explain.token_text(tok, i) for i in tok.encode(text)]
    assert "' hello'" in [explain.token_text(tok, i) for i in tok.encode("a hello")]
    assert "'\\n'" in shown
    pieces = [ast.literal_eval(s) for s in shown]
    assert any(isinstance(p, bytes) for p in pieces)  # the emoji is split over byte tokens
    assert b"".join(p if isinstance(p, bytes) else p.encode() for p in pieces) == text.encode()
    assert explain.token_text(tok, tok.eos_id) == "<|endoftext|>"

"""sample.py end to end on a tiny run folder built here, and run-folder discovery (minisft/runs.py)."""

import io
import json
import os

import pytest

import sample
from minisft import best_of_n, runs
from minisft.pretrained import build_tiny, save_model
from minisft.templates import save_template

TEXTS = ["debugging is just talking to a rubber duck that judges you", "ship it on friday, fix it on monday",
         "tabs or spaces? the answer is a linter", "my code works and i have no idea why"] * 3


def make_run(runs_dir, name, template="alpaca", step=5):
    """A run folder in the training layout: runs/<name>/latest -> checkpoints/step-N/ (HF folder + template)."""
    model, tok = build_tiny(TEXTS, vocab_size=300)
    ckpt = runs_dir / name / "checkpoints" / f"step-{step:07d}"
    save_model(model, ckpt)
    tok.save(ckpt)
    save_template(ckpt, template)
    (runs_dir / name / "latest").write_text(f"checkpoints/{ckpt.name}\n")
    return runs_dir / name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"), "tiny-run")


def run_main(argv, capsys):
    code = sample.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prints_tweets_with_their_length(run_dir, capsys):
    code, out, _ = run_main(["--model", str(run_dir), "--prompt", "Write a witty tweet about debugging",
                             "--num-samples", "2", "--seed", "0", "--max-new-tokens", "12"], capsys)
    assert code == 0
    assert "Write a witty tweet about debugging" in out
    assert "[1/2]" in out and "[2/2]" in out and out.count(" chars") == 2


def test_wraps_the_prompt_in_the_runs_template(run_dir, capsys, monkeypatch):
    from minisft.tokenizer import Tokenizer

    tok = Tokenizer.from_folder(runs.checkpoint_folder(run_dir))
    sent = []

    def fake_generate(model, prompts, max_new_tokens, **kw):
        sent.extend(tok.decode(p) for p in prompts)
        return [[] for _ in prompts]

    monkeypatch.setattr(best_of_n, "generate", fake_generate)  # sample.py decodes through best_of_n
    run_main(["--model", str(run_dir), "--prompt", "Write about tabs"], capsys)
    assert sent == ["### Instruction:\nWrite about tabs\n\n### Response:\n"]  # the run's template.json (alpaca)
    run_main(["--model", str(run_dir), "--prompt", "Write about tabs", "--raw"], capsys)
    assert sent[-1] == "Write about tabs"


def test_json_lines(run_dir, capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Write a tweet about tabs\n\nWrite a tweet about friday deploys\n")
    code, out, _ = run_main(["--model", str(run_dir / "checkpoints" / "step-0000005"), "--prompts-file",
                             str(prompts), "--num-samples", "2", "--json", "--max-new-tokens", "20",
                             "--seed", "1"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 4
    assert [r["prompt"] for r in rows] == ["Write a tweet about tabs"] * 2 + ["Write a tweet about friday deploys"] * 2
    for r in rows:
        assert r["chars"] == len(r["text"]) and 0 <= r["n_tokens"] <= 20
        assert r["finished"] == (r["n_tokens"] < 20)


def test_same_seed_same_tweets_and_stdin_prompts(run_dir, capsys, monkeypatch):
    argv = ["--model", str(run_dir), "--prompt", "-", "--json", "--max-new-tokens", "15", "--seed", "7"]
    monkeypatch.setattr("sys.stdin", io.StringIO("first prompt\nsecond prompt\n"))
    _, a, _ = run_main(argv, capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO("first prompt\nsecond prompt\n"))
    _, b, _ = run_main(argv, capsys)
    assert a == b and [json.loads(x)["prompt"] for x in a.splitlines()] == ["first prompt", "second prompt"]


def test_latest_run_is_the_default(tmp_path, capsys):
    old, new = make_run(tmp_path, "old", template="plain"), make_run(tmp_path, "new", template="minimal")
    os.utime(old / "latest", (2e9, 2e9))  # old's pointer was written last: it is the latest run
    os.utime(new / "latest", (1e9, 1e9))
    assert runs.latest_run(tmp_path) == old
    _, out, _ = run_main(["--runs-dir", str(tmp_path), "--prompt", "hi", "--json", "--max-new-tokens", "3"], capsys)
    assert json.loads(out.splitlines()[0])["model"] == str(old / "checkpoints" / "step-0000005")


def test_long_prompt_notice(run_dir, capsys):
    code, _, err = run_main(["--model", str(run_dir), "--prompt", "debugging " * 300, "--max-new-tokens", "5"],
                            capsys)
    assert code == 0 and "notice:" in err and "its start was cut" in err


def test_over_280_is_flagged():
    record = {"prompt": "p", "text": "x" * 281, "chars": 281, "n_tokens": 90, "finished": True, "sample": 1}
    assert "OVER 280" in sample.show(record, 1)
    assert "OVER 280" not in sample.show({**record, "text": "x" * 280, "chars": 280}, 1)


@pytest.mark.parametrize("flag, value", [
    ("--top-p", "0"), ("--top-p", "1.5"), ("--temperature", "-0.5"), ("--top-k", "-1"),
    ("--repetition-penalty", "0"), ("--num-samples", "0"), ("--max-new-tokens", "0"), ("--batch-size", "0"),
])
def test_bad_values_exit_2_naming_the_flag(run_dir, capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        sample.main(["--model", str(run_dir), "--prompt", "hi", flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and "Traceback" not in err


def test_no_run_found_says_how_to_make_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sample.main(["--runs-dir", str(tmp_path), "--prompt", "hi"])
    assert e.value.code == 2 and "train one with python train.py" in capsys.readouterr().err


def test_bad_model_folder_and_missing_prompt(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sample.main(["--model", str(tmp_path), "--prompt", "hi"])
    assert e.value.code == 2 and "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        sample.main(["--model", str(tmp_path)])
    assert e.value.code == 2 and "--prompt" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- runs.py

def test_checkpoint_folder_follows_latest(run_dir, tmp_path):
    ckpt = run_dir / "checkpoints" / "step-0000005"
    assert runs.checkpoint_folder(run_dir) == ckpt
    assert runs.checkpoint_folder(ckpt) == ckpt  # a checkpoint (any HF folder) stands for itself
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "latest").write_text("checkpoints/step-0000999\n")
    with pytest.raises(FileNotFoundError, match="step-0000999"):
        runs.checkpoint_folder(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        runs.checkpoint_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.checkpoint_folder(tmp_path / "nope")


def test_latest_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.latest_run(tmp_path / "runs")
    (tmp_path / "runs" / "no-checkpoint-yet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train one with python train.py"):
        runs.latest_run(tmp_path / "runs")


def test_fast_decode_switch_gives_the_same_tweets(run_dir, capsys):
    """--no-fast-decode (plain nn.Linear) and the default (fast_decode.py's layouts) write the same tweets, in the
    tiny run's fp32 and in bf16 (prepacked where the CPU has native bf16)."""
    for dtype in ("fp32", "bf16"):
        argv = ["--model", str(run_dir), "--prompt", "Write about tabs", "--json", "--num-samples", "3",
                "--max-new-tokens", "15", "--seed", "4", "--temperature", "0", "--dtype", dtype]
        _, fast, _ = run_main(argv, capsys)
        _, plain, _ = run_main(argv + ["--no-fast-decode"], capsys)
        assert fast == plain and len(fast.splitlines()) == 3

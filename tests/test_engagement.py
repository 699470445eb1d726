"""The engagement levers: the condition line (in the prompt, masked, dropped, saved, asked for), conditioning that
bites, cross-fitted predicted buckets, best-of-n, and the picker kept apart from the grader."""

import json
import random

import pytest
import torch

import sample as sample_cli
from minisft import best_of_n as B
from minisft.conditioning import BUCKETS, LINE, fit_condition, measure_values, parse_bucket
from minisft.config import TrainConfig
from minisft.data import encode_split, load_split
from minisft.loss import IGNORE
from minisft.pretrained import build_tiny
from minisft.sampling import generate
from minisft.templates import load_condition, prompt_format
from minisft.training import main as train_main
from minisft.tweets import judges
from minisft.tweets.datagen import generate_records


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("engagement") / "tweets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in generate_records(500, seed=3)))
    return path


@pytest.fixture(scope="module")
def tok(data_file):
    texts = [json.loads(line)["instruction"] + " " + json.loads(line)["response"] for line in open(data_file)]
    return build_tiny(texts + [LINE.format(b) for b in BUCKETS], vocab_size=600)[1]


# --------------------------------------------------------------------------------------------- the line itself

def test_the_bucket_line_is_in_the_prompt_masked_and_dropped_at_the_given_rate(data_file, tok):
    cfg = TrainConfig(data=str(data_file), condition="observed", condition_dropout=0.25, seed=7)
    split = load_split(cfg)
    data = encode_split(split, tok, prompt_format("plain"), max_len=256)
    assert split.condition is not None and len(split.condition.edges) == 4
    counts = [sum(split.buckets[r["id"]] == b for r in split.train) for b in range(5)]
    assert all(0.15 < c / len(split.train) < 0.25 for c in counts), counts  # quintiles of the training split
    lined = 0
    for record, ex in zip(split.train, data.train):
        assert ex.id == record["id"]
        n_prompt = next(t for t, target in enumerate(ex.targets) if target != IGNORE)  # first learned position
        prompt, learned = tok.decode(ex.input_ids[:n_prompt + 1]), tok.decode(t for t in ex.targets if t != IGNORE)
        line = LINE.format(BUCKETS[split.buckets[record["id"]]])
        assert (line in prompt) == split.condition.keeps_line(record["id"])  # in the prompt, or dropped
        assert "Engagement:" not in learned  # the line is never a target: masked with the prompt
        lined += line in prompt
    assert abs(1 - lined / len(split.train) - 0.25) < 0.06  # dropped at the given rate
    again = load_split(cfg)
    assert [again.condition.keeps_line(r["id"]) for r in split.train] == \
        [split.condition.keeps_line(r["id"]) for r in split.train]  # the same examples with the same seed
    other = load_split(TrainConfig(data=str(data_file), condition="observed", condition_dropout=0.25, seed=8))
    assert [other.condition.keeps_line(r["id"]) for r in split.train] != \
        [split.condition.keeps_line(r["id"]) for r in split.train]
    assert not any("Engagement:" in tok.decode(ex.input_ids) for ex in data.val)  # plain validation: no line
    assert all("Engagement:" in tok.decode(ex.input_ids) for ex in data.val_bucketed)  # and with the true bucket


def test_predicted_buckets_are_cross_fitted(data_file):
    """No tweet's bucket comes from a predictor that saw its own likes: changing one training tweet's likes leaves
    its own predicted value alone (its fold's predictor never saw it), and moves the others'."""
    split = load_split(TrainConfig(data=str(data_file)))
    before = measure_values(split.train, split.val, "predicted", "raw")
    changed = [dict(r) for r in split.train]
    changed[0]["likes"] = (changed[0]["likes"] or 0) * 1000 + 10_000
    after = measure_values(changed, split.val, "predicted", "raw")
    assert after[changed[0]["id"]] == pytest.approx(before[changed[0]["id"]], abs=1e-12)
    assert any(abs(after[r["id"]] - before[r["id"]]) > 1e-9 for r in changed[1:])
    condition, buckets = fit_condition(split.train, split.val, "predicted", "relative", 0.1, 0)
    assert set(buckets) == {r["id"] for r in split.train + split.val}  # every tweet has a predicted bucket


def test_bucket_names():
    assert [parse_bucket(n) for n in ("top", "bottom", "60-80", "40-60%", "none")] == [4, 0, 3, 2, None]
    with pytest.raises(ValueError, match="unknown engagement bucket"):
        parse_bucket("best")


def test_a_conditioned_run_saves_its_buckets_and_sampling_asks_for_the_top_one(data_file, tmp_path, capsys,
                                                                              monkeypatch):
    args = ["--model", "tiny", "--data", str(data_file), "--out", str(tmp_path), "--tiny-vocab", "400",
            "--max-steps", "2", "--eval-every", "0", "--final-eval", "0", "--wandb", "disabled", "--no-progress"]
    assert train_main(args + ["--name", "cond", "--condition", "predicted"]) == 0
    assert train_main(args + ["--name", "plain", "--condition", "none"]) == 0
    saved = load_condition(tmp_path / "cond" / (tmp_path / "cond" / "latest").read_text().strip())
    assert saved["measure"] == "predicted" and len(saved["edges"]) == 4 and saved["buckets"] == list(BUCKETS)
    config = json.loads((tmp_path / "cond" / "run_config.json").read_text())
    assert config["weights"] == "none"  # conditioning replaces the weights unless --weights is given
    sent = []
    monkeypatch.setattr(B, "generate", lambda model, prompts, n, **kw: sent.extend(prompts) or [[] for _ in prompts])
    tok_of = lambda run: __import__("minisft.pretrained", fromlist=["x"]).load_tokenizer(  # noqa: E731
        str(tmp_path / run / (tmp_path / run / "latest").read_text().strip()))
    for flag, line in ((None, "top 20%"), ("bottom", "bottom 20%"), ("none", None)):
        sent.clear()
        extra = ["--engagement-bucket", flag] if flag else []
        assert sample_cli.main(["--model", str(tmp_path / "cond"), "--prompt", "Write a tip about Git", *extra]) == 0
        prompt = tok_of("cond").decode(sent[0])
        assert (f"Engagement: {line}" in prompt) if line else ("Engagement:" not in prompt)
    with pytest.raises(SystemExit):
        sample_cli.main(["--model", str(tmp_path / "plain"), "--prompt", "hi", "--engagement-bucket", "top"])
    assert "was not trained with --condition" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ conditioning that bites

def test_conditioning_bites_the_top_bucket_writes_the_marker_and_the_bottom_does_not(tmp_path):
    """The mechanism, on a task the tiny model can learn in seconds: tweets that did well end with a marker word.
    Trained with the bucket in the prompt, the model writes the marker when asked for the top bucket, and not when
    asked for the bottom one; the instructions alone can't tell it which."""
    rng = random.Random(0)
    words = "code ship test merge debug deploy review refactor write read".split()
    rows = []
    for i in range(600):
        good = i % 2 == 0
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 6))) + (" zebra" if good else "")
        # the instruction says nothing about the outcome: only the bucket line can
        rows.append({"id": f"m{i}", "instruction": f"Write a tweet number {rng.randint(0, 39)}", "response": text,
                     "likes": rng.randint(500, 1000) if good else rng.randint(0, 20)})
    data = tmp_path / "marker.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert train_main(["--model", "tiny", "--data", str(data), "--out", str(tmp_path), "--name", "m",
                       "--condition", "observed", "--condition-dropout", "0", "--tiny-vocab", "300",
                       "--max-steps", "300", "--lr", "3e-3", "--eval-every", "0", "--final-eval", "0",
                       "--wandb", "disabled", "--no-progress"]) == 0
    from minisft.pretrained import load_model, load_tokenizer
    from minisft.templates import format_prompt

    ckpt = tmp_path / "m" / (tmp_path / "m" / "latest").read_text().strip()
    model, tok = load_model(str(ckpt)), load_tokenizer(str(ckpt))
    rates = {}
    for bucket in (4, 0):
        instruction = f"Write a tweet number 7\n{LINE.format(BUCKETS[bucket])}"
        outs = generate(model, [tok.encode(format_prompt(prompt_format("plain"), instruction))] * 20, 40,
                        temperature=0.8, eos_id=tok.eos_id, seed=0)
        rates[bucket] = sum("zebra" in tok.decode(o) for o in outs) / 20
    assert rates[4] >= 0.8 and rates[0] <= 0.2, rates


# ---------------------------------------------------------------------------------------------------- best-of-n

def tiny_model(seed=0):
    from minisft.model import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50)).eval()


def test_best_of_n_keeps_the_highest_scored_candidate():
    model, prompts = tiny_model(), [[1, 2, 3], [4, 5]]
    picked = B.best_of_n(model, prompts, 5, lambda i, cands: [sum(c) % 7 for c in cands], 8, temperature=1.0,
                         eos_id=None, seed=3)
    for pick in picked:
        assert len(pick["candidates"]) == 5 and pick["scores"] == [sum(c) % 7 for c in pick["candidates"]]
        assert pick["scores"][pick["best"]] == max(pick["scores"]) and pick["tokens"] == pick["candidates"][
            pick["best"]]
        assert pick["best"] == pick["scores"].index(max(pick["scores"]))  # the first of equal best


def test_best_of_one_is_plain_sampling_with_the_same_seed():
    model, prompts = tiny_model(), [[1, 2, 3], [4, 5], [6]]
    plain = generate(model, prompts, 10, temperature=0.9, top_p=0.95, eos_id=0, seed=11)
    picked = B.best_of_n(model, prompts, 1, lambda i, c: [0.0], 10, temperature=0.9, top_p=0.95, eos_id=0, seed=11)
    assert [p["tokens"] for p in picked] == plain


def test_sample_best_of_lists_every_candidate_with_its_score(data_file, tmp_path, capsys):
    assert train_main(["--model", "tiny", "--data", str(data_file), "--out", str(tmp_path), "--name", "r",
                       "--tiny-vocab", "400", "--max-steps", "2", "--eval-every", "0", "--final-eval", "0",
                       "--wandb", "disabled", "--no-progress"]) == 0
    assert (tmp_path / "r" / judges.JUDGE_FILE).is_file()  # the picker, saved when the run started
    capsys.readouterr()
    assert sample_cli.main(["--model", str(tmp_path / "r"), "--prompt", "Write a tip about Git", "--best-of", "4",
                            "--json", "--seed", "0", "--max-new-tokens", "12"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    scores = [c["score"] for c in row["candidates"]]
    assert len(scores) == 4 and row["score"] == max(scores)
    assert row["text"] == row["candidates"][scores.index(max(scores))]["text"]


# ------------------------------------------------------------------------------------------- picker vs grader

def test_picker_and_grader_are_fitted_on_disjoint_halves_for_imported_data(data_file):
    split = load_split(TrainConfig(data=str(data_file)))
    imported = [{**r, "id": "x" + r["id"][4:]} for r in split.train]  # no synthetic ids: as if imported
    first, second = judges.halves(imported)
    assert {r["id"] for r in first}.isdisjoint({r["id"] for r in second})
    assert len(first) + len(second) == len(imported) and abs(len(first) - len(second)) < 0.15 * len(imported)
    picker, grader = judges.picker(imported, []), judges.grader(imported, [])
    assert grader.name == "learned"
    assert picker.predictor.n_train == sum(r["likes"] is not None for r in first)
    assert grader.info["predictor_records"] == sum(r["likes"] is not None for r in second)
    # on synthetic data the grader is the oracle, and the picker learns from the whole training split
    assert judges.grader(split.train, split.val).name == "oracle"
    assert judges.picker(split.train, split.val).predictor.n_train == len(split.train)


def test_condition_auto_is_predicted_with_engagement_and_none_without(capsys):
    from minisft.conditioning import AUTO_MIN, resolve_condition

    records = generate_records(AUTO_MIN, seed=4)
    assert resolve_condition("auto", records) == "predicted" and capsys.readouterr().out == ""
    bare = [{**r, "likes": None, "comments": None} for r in records]
    assert resolve_condition("auto", bare[1:] + records[:1]) == "none"  # one record with likes is not enough
    assert "1 training records have likes or comments" in capsys.readouterr().out
    assert resolve_condition("observed", bare) == "observed"  # an explicit choice is never overridden
    from minisft.config import weight_scheme

    assert weight_scheme(TrainConfig(condition="auto")) == "none"  # the engagement goes in the prompt, not a weight
    assert weight_scheme(TrainConfig(condition="none")) == "log"

"""A user's own data, end to end: every import format and the seed's own row format (no id, topics the synthetic
set never had) go through importer -> train.py (in-loop evaluation on) -> evaluate -> report -> explain ->
sample.py. And the guards that stop a run before it wastes work, each with the exact message it prints.
"""

import json
import math
import random

import pandas as pd
import pytest
import torch

import sample as sample_cli
from minisft import evaluate, explain, report
from minisft.model import GPT, tiny_config
from minisft.objective import SFTObjective
from minisft.optimizer import make_optimizer
from minisft.precision import pick_precision
from minisft.training import TrainingError, main, train_step
from minisft.tweets import importers

TOPICS = {"baking": ["sourdough", "crumb", "starter", "oven", "rye"], "gardening": ["tomatoes", "compost", "seeds",
                                                                                     "mulch", "soil"]}


def own_posts(n=64, seed=0):
    """(text, likes, topic, style) of a made-up baker-gardener: not the generator's voice, topics or ids."""
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        topic = ("baking", "gardening")[i % 2]
        a, b = rng.sample(TOPICS[topic], 2)
        text = f"Day {i}: my {a} taught me more about patience than my {b} ever did."
        posts.append((text, rng.randint(0, 300), topic, ("tip", "rant")[i % 3 == 0]))
    return posts


def train_args(data, out, name, *extra):
    return ["--model", "tiny", "--data", str(data), "--out", str(out), "--name", name, "--batch-size", "8",
            "--tiny-vocab", "400", "--max-steps", "4", "--eval-every", "2", "--eval-samples", "2", "--final-eval",
            "2", "--wandb", "disabled", "--no-progress", *extra]


def through_everything(data, tmp_path, name, capsys):
    """train.py with in-loop evaluation -> evaluate -> report -> explain -> sample.py: every step exits 0."""
    assert main(train_args(data, tmp_path, name)) == 0
    run = tmp_path / name
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert 2 in {s["step"] for s in samples}  # the in-loop evaluation ran mid-run (no oracle crash)
    assert evaluate.main([str(run), "--num-prompts", "2", "--k", "1", "--max-new-tokens", "12"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["engagement_scorer"] in ("learned", "none") and result["metrics"]["eval/tweets"] == 2
    assert report.main([str(run), "--out", str(tmp_path / "report")]) == 0
    assert explain.main(["0", "--model", str(run)]) == 0
    assert sample_cli.main(["--model", str(run), "--prompt", "Write a tip about sourdough", "--seed", "0",
                            "--max-new-tokens", "12"]) == 0
    return run, samples, result, capsys.readouterr()


def test_the_seed_row_format_with_foreign_topics_trains_evaluates_and_samples(tmp_path, capsys):
    rows = [{"instruction": f"Write a {style} about {topic}, please ({i})", "response": text, "likes": likes,
             "comments": likes // 10, "impressions": likes * 30 + 100, "topic": topic, "style": style}
            for i, (text, likes, topic, style) in enumerate(own_posts())]
    data = tmp_path / "own.csv"  # the design document's columns, no id
    pd.DataFrame(rows).to_csv(data, index=False)
    run, samples, result, out = through_everything(data, tmp_path, "seed", capsys)
    assert all(s["judge"] == "learned" and s["expected_likes"] >= 0 for s in samples)
    assert result["metrics"]["eval/on_topic"] is None  # no keyword list for "baking": n/a, not a crash or a guess
    assert result["metrics"]["eval/human_expected_likes_mean"] is not None
    assert "expected likes (learned, R^2 on val" in out.out


def write_archive(folder, posts):
    tweets = [{"tweet": {"id_str": str(10**18 + i), "full_text": text, "favorite_count": str(likes),
                         "created_at": f"Wed Aug {1 + i % 28:02d} 20:21:02 +0000 2018"}}
              for i, (text, likes, _, _) in enumerate(posts)]
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "tweets.js").write_text("window.YTD.tweets.part0 = " + json.dumps(tweets))
    (folder / "data" / "account.js").write_text('window.YTD.account.part0 = [{"account": {"username": "baker"}}]')
    return [str(folder)]


def write_analytics(folder, posts):
    lines = ['"Post id","Date","Post text","Likes","Replies","Impressions"']
    lines += [f'"{10**18 + i}","Wed, Aug 29, 2018","{text}","{likes}","{likes // 9}","{likes * 40}"'
              for i, (text, likes, _, _) in enumerate(posts)]
    path = folder / "analytics.csv"
    path.write_text("\n".join(lines) + "\n")
    return [str(path)]


def write_bluesky(folder, posts):
    feed = [{"post": {"uri": f"at://did:plc:baker/app.bsky.feed.post/{i}", "author": {"did": "did:plc:baker",
                                                                                       "handle": "baker.bsky.social"},
                      "record": {"text": text, "createdAt": f"2024-03-{1 + i % 28:02d}T10:00:00Z"},
                      "likeCount": likes, "replyCount": likes // 7}} for i, (text, likes, _, _) in enumerate(posts)]
    path = folder / "feed.jsonl"
    path.write_text(json.dumps({"feed": feed[:30]}) + "\n" + json.dumps({"feed": feed[30:]}) + "\n")
    return [str(path)]


def write_generic(folder, posts):
    path = folder / "mine.csv"
    pd.DataFrame([{"body": text, "favs": likes, "kind": topic, "who": "ana"} for text, likes, topic, _ in posts]
                 ).to_csv(path, index=False)
    return [str(path), "--map", "text=body,likes=favs,topic=kind,author=who"]


@pytest.mark.parametrize("writer, author", [(write_archive, "baker"), (write_analytics, None),
                                            (write_bluesky, "baker.bsky.social"), (write_generic, "ana")])
def test_each_import_format_goes_all_the_way(tmp_path, capsys, writer, author):
    source = tmp_path / "export"
    source.mkdir()
    data = tmp_path / "own.jsonl"
    assert importers.main(writer(source, own_posts()) + ["--out", str(data)]) == 0
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(records) == 64 and {r["author"] for r in records} == {author}
    if writer is write_generic:
        assert {r["topic"] for r in records} == {"baking", "gardening"}
    through_everything(data, tmp_path, writer.__name__, capsys)


# ------------------------------------------------------------------------------------------------- the guards

def test_a_non_finite_gradient_with_a_finite_loss_stops_before_the_update():
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=50))
    objective = SFTObjective(model)
    optimizer = make_optimizer(model, 1e-3, 0.0, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.transformer.h[0].mlp.c_fc.weight.register_hook(lambda g: torch.full_like(g, math.inf))
    batch = {"input_ids": torch.randint(0, 50, (2, 8)), "targets": torch.randint(0, 50, (2, 8)),
             "weights": torch.ones(2)}
    with pytest.raises(TrainingError) as err:
        train_step(objective, [batch], optimizer, pick_precision(torch.device("cpu"), "fp32"), 1e-3, 1.0)
    assert err.match(r"^the gradient norm became inf \(the loss was \d+\.\d{4}\): stopping before this step changes "
                     r"the weights; the last checkpoint is intact \(try a lower --lr, or --dtype fp32\)$")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no update happened
    assert all(p.grad is None for p in model.parameters())


def test_max_len_above_the_context_is_refused_before_any_work(tmp_path, capsys, small_hf_folder):
    missing = tmp_path / "not-read-yet.jsonl"  # the data is never opened: the check comes first
    assert main(["--model", "tiny", "--max-len", "300", "--data", str(missing), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("error: --max-len 300 is longer than the 256 positions tiny can read: use "
                                       "--max-len 256 or less\n")
    assert main(["--model", str(small_hf_folder), "--max-len", "200", "--data", str(missing), "--name", "f",
                 "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"error: --max-len 200 is longer than the 128 positions {small_hf_folder.name} "
                                       "can read: use --max-len 128 or less\n")
    assert not any(tmp_path.iterdir())  # no run folder was made


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "/abs"])
def test_name_must_be_a_plain_folder_name(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--name", name])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(f"train.py: error: --name {name!r}: must be a plain folder name (no "
                                            "'/', '\\' or '..'): the run goes in --out/NAME\n")


def test_evaluate_and_sample_given_a_folder_of_runs_list_the_runs(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name / "checkpoints" / "step-0000001").mkdir(parents=True)
        (tmp_path / name / "latest").write_text("checkpoints/step-0000001\n")
    assert evaluate.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is a folder of 2 run(s), not a run: pass one of them:\n  ")
    assert f"\n  {tmp_path / 'a'}" in err and f"\n  {tmp_path / 'b'}" in err
    with pytest.raises(SystemExit):
        sample_cli.main(["--model", str(tmp_path), "--prompt", "hi"])
    assert f"{tmp_path} is a folder of 2 run(s), not a run: pass one of them:" in capsys.readouterr().err

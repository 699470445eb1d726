"""Data: loading and checking, the split, the mix, the shift and the mask on collated batches, batching."""

import json
import random

import pandas as pd
import pytest
import torch

from minisft.config import TrainConfig
from minisft.data import IGNORE, EncodeStats, Example, batches, collate, encode_example, pad_fraction, prepare
from minisft.records import DataError, load_records, mix_records, split_records
from minisft.templates import prompt_format, render_prompt, response_text
from minisft.tokenizer import train_tokenizer

TEXTS = [
    "Instruction: Write a funny tweet about Rust\nTweet: Rust: the borrow checker is my therapist now.",
    "### Instruction:\nGive a tip about Python\n\n### Response:\nUse f-strings, they are faster and easier to read.",
    "Ask a question about databases\n---\nWhat is the one index you regret never adding? #postgres",
    "Tweet: Shipping on Friday is a lifestyle choice. 🚀 https://example.com",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 20, vocab_size=400)


def record(i, likes=10, comments=1, impressions=1000, source="own", response=None):
    return {"id": f"r{i}", "instruction": f"Write a tweet about topic {i}",
            "response": response or f"Tweet number {i} about code, with {'words ' * (i % 7)}in it.",
            "likes": likes, "comments": comments, "impressions": impressions, "topic": "python", "style": "tip",
            "source": source, "created_at": "2024-03-05T14:22:00Z"}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------- loading

# Every kind of bad row, each with the field that must be named. Line numbers are file lines (1-based).
BAD_ROWS = [
    ('{"id": "x", "instruction": "hi", ', "(line)"),  # not JSON
    ("[1, 2, 3]", "(line)"),  # JSON but not an object
    ({**record(3), "id": ["not", "text"]}, "id"),  # a missing id is fine (derived); a list is not an id
    ({k: v for k, v in record(4).items() if k != "response"}, "response"),
    ({**record(5), "instruction": "   "}, "instruction"),
    ({**record(6), "response": 42}, "response"),
    ({**record(7), "likes": -1}, "likes"),
    ({**record(8), "likes": 12.5}, "likes"),
    ({**record(9), "comments": "abc"}, "comments"),
    ({**record(10), "impressions": True}, "impressions"),
    ({**record(11), "response": "stop <|endoftext|> here"}, "response"),
    ({**record(12), "created_at": "yesterday"}, "created_at"),
    ({**record(13), "topic": 5}, "topic"),
]


def bad_fixture(tmp_path):
    good = [record(0), {**record(1), "likes": None, "impressions": None}, {**record(2), "likes": 12.0}]
    del good[1]["comments"]  # a missing key is a missing metric, not an error
    rows = good + [row for row, _ in BAD_ROWS] + [dict(record(0), id="dup")]  # last: a duplicate of record 0
    lines = rows[:2] + [""] + rows[2:]  # a blank line, which is not a record but still a file line
    expected = {5 + k: field for k, (_, field) in enumerate(BAD_ROWS)}  # 3 good + 1 blank line come first
    return write_jsonl(tmp_path / "bad.jsonl", lines), expected, len(rows)


def test_bad_rows_raise_one_error_with_file_line_and_field(tmp_path):
    path, expected, _ = bad_fixture(tmp_path)
    with pytest.raises(DataError) as err:
        load_records(path)
    msg = str(err.value)
    assert f"{len(expected)} of " in msg
    for line in sorted(expected)[:5]:
        assert f"{path}:{line}: {expected[line]}: " in msg
    assert f"{path}:{sorted(expected)[5]}:" not in msg  # only the first 5 listed


def test_skip_mode_writes_every_reject_and_loses_nothing(tmp_path):
    path, expected, n_rows = bad_fixture(tmp_path)
    rejects = tmp_path / "out" / "rejects.jsonl"
    records, stats = load_records(path, on_bad="skip", rejects_path=rejects)
    assert (stats.read, stats.kept, stats.rejected, stats.duplicates) == (n_rows, 3, len(expected), 1)
    assert stats.kept + stats.rejected + stats.duplicates == stats.read
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert {r["line"]: r["problems"][0]["field"] for r in written} == expected
    assert all(len(r["problems"]) == 1 and r["problems"][0]["reason"] and r["raw"] for r in written)
    assert written[0]["raw"] == path.read_text().splitlines()[4]  # the raw text of the broken line
    by_id = {r["id"]: r for r in records}
    assert by_id["r1"]["likes"] is None and by_id["r1"]["comments"] is None  # null stays null, never 0
    assert by_id["r2"]["likes"] == 12 and isinstance(by_id["r2"]["likes"], int)  # 12.0 is the count 12


def test_csv_lines_count_the_header_and_multiline_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,instruction,response,likes,comments,impressions\n"
                    'a,Write one,"Line one\nline two",12.0,,\n'  # file lines 2-3; empty cells = missing metrics
                    "b,Write two,Fine,12.5,0,1\n"  # line 4: not a whole number
                    "c,Write three,Fine too,abc,0,1\n"  # line 5
                    "d,Write four,Short row\n")  # line 6: too few cells
    with pytest.raises(DataError) as err:
        load_records(path)
    for line, field in [(4, "likes"), (5, "likes"), (6, "(row)")]:
        assert f"{path}:{line}: {field}: " in str(err.value)
    records, stats = load_records(path, on_bad="skip")
    assert stats.rejected == 3 and records[0]["response"] == "Line one\nline two"
    assert (records[0]["likes"], records[0]["comments"], records[0]["impressions"]) == (12, None, None)


def test_parquet_nulls_become_none_and_bad_rows_name_their_row(tmp_path):
    df = pd.DataFrame([record(0), {**record(1), "likes": None}, {**record(2), "likes": -3}])
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    with pytest.raises(DataError, match=r"t\.parquet:3: likes: negative"):
        load_records(path)
    records, stats = load_records(path, on_bad="skip")
    assert stats.kept == 2 and records[1]["likes"] is None and records[0]["likes"] == 10


def test_unknown_extension_and_on_bad(tmp_path):
    with pytest.raises(DataError, match="unknown file type"):
        load_records(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="on_bad"):
        load_records(write_jsonl(tmp_path / "x.jsonl", [record(0)]), on_bad="ignore")


# -------------------------------------------------------------------------------------------- split and mix

def test_split_is_deterministic_and_keeps_each_response_on_one_side():
    # 300 responses, each twice: under another instruction and with other case/spacing.
    records = [record(i, response=f"Same Tweet {i // 2}" if i % 2 else f"same  tweet {i // 2} ") for i in range(600)]
    for r in records:
        r["response"] = r["response"].strip()
    train, val = split_records(records, val_fraction=0.1, seed=3)
    assert (train, val) == split_records(records, val_fraction=0.1, seed=3)
    assert len(train) + len(val) == 600 and 0.06 < len(val) / 600 < 0.14
    norm = lambda r: " ".join(r["response"].lower().split())
    assert {norm(r) for r in train}.isdisjoint({norm(r) for r in val})
    assert split_records(records, val_fraction=0.1, seed=4)[1] != val  # the seed matters


def test_split_gives_a_tiny_data_set_one_validation_record():
    train, val = split_records([record(i) for i in range(5)], val_fraction=0.01)
    assert len(val) == 1 and len(train) == 4


def test_mix_reaches_the_shares_with_as_many_records_as_possible():
    records = ([record(i, source="own") for i in range(100)] + [record(i, source="viral") for i in range(100, 150)]
               + [record(i, source="diverse") for i in range(150, 350)])
    mixed = mix_records(records, "own=0.5,viral=0.3,diverse=0.2", seed=1)
    counts = {s: sum(r["source"] == s for r in mixed) for s in ("own", "viral", "diverse")}
    assert counts["viral"] == 50  # the scarcest source relative to its share is used completely
    for s, share in [("own", 0.5), ("viral", 0.3), ("diverse", 0.2)]:
        assert abs(counts[s] / len(mixed) - share) < 1 / len(mixed) + 1e-9
    assert len({r["id"] for r in mixed}) == len(mixed)  # no repeats
    assert mixed == mix_records(records, "own=0.5,viral=0.3,diverse=0.2", seed=1)
    assert mixed != mix_records(records, "own=0.5,viral=0.3,diverse=0.2", seed=2)


@pytest.mark.parametrize("spec, message", [("own=0.5,bogus=0.5", "bogus"), ("own=0.5,viral=0.3", "sum to 0.8"),
                                           ("own:1", "bad entry"), ("own=-0.5,viral=1.5", "bad entry")])
def test_mix_errors(spec, message):
    records = [record(0, source="own"), record(1, source="viral")]
    with pytest.raises(ValueError, match=message):
        mix_records(records, spec)


# ---------------------------------------------------------------------------- the shift and the mask, batched

def test_mask_and_shift_on_the_collated_batch(tok):
    pairs = [("Write a funny tweet about Rust", "Rust: the borrow checker is my therapist now."),
             ("Give a tip", "Use f-strings."),
             ("Ask a question about databases please", "What is the one index you regret never adding? #postgres")]
    examples = [encode_example(tok, render_prompt("plain", i), r, max_len=128) for i, r in pairs]
    batch = collate(examples, pad_id=tok.eos_id)  # what the training loop consumes
    B, T = batch["input_ids"].shape
    assert B == 3 and batch["targets"].shape == (B, T) and T == max(len(e.input_ids) for e in examples)
    n_targets = 0
    for b, (instruction, response) in enumerate(pairs):
        prompt = render_prompt("plain", instruction)
        p = tok.encode(prompt)  # prompt and response tokenized separately, so the boundary is exact
        r = tok.encode(response_text(prompt, response)) + [tok.eos_id]
        ids, n = p + r, len(p) + len(r) - 1
        row_in, row_t = batch["input_ids"][b].tolist(), batch["targets"][b].tolist()
        assert row_in[:n] == ids[:-1] and row_t[:n] != ids[1:]  # inputs: all but the last; targets: masked
        assert row_t[:len(p) - 1] == [IGNORE] * (len(p) - 1)  # predicting a prompt token: no loss
        assert row_t[len(p) - 1:n] == r  # from the last prompt position on: the response, then the end token
        assert row_t[n - 1] == tok.eos_id  # the end of text IS a target: the model learns to stop
        assert row_in[n:] == [tok.eos_id] * (T - n) and row_t[n:] == [IGNORE] * (T - n)  # pad = eos, never learned
        for t in range(n - 1):  # the shift: each real target is the next input token
            assert row_t[t] in (IGNORE, row_in[t + 1])
        n_targets += len(r)
    assert batch["n_targets"] == n_targets == int((batch["targets"] != IGNORE).sum())
    assert batch["input_ids"].dtype == batch["targets"].dtype == torch.long


def test_prompt_ids_are_a_prefix_and_train_on_prompt_flips_the_mask(tok):
    prompt, response = render_prompt("alpaca", "Give a tip about Python"), "Use f-strings."
    masked = encode_example(tok, prompt, response, max_len=128)
    full = encode_example(tok, prompt, response, max_len=128, train_on_prompt=True)
    p = tok.encode(prompt)
    assert masked.input_ids[:len(p)] == p and masked.input_ids == full.input_ids
    assert full.targets == (full.input_ids + [tok.eos_id])[1:]  # nothing masked
    differ = [t for t in range(len(full.targets)) if full.targets[t] != masked.targets[t]]
    assert differ == list(range(len(p) - 1))  # exactly the prompt-predicting positions


def test_too_long_cuts_the_prompt_from_the_left_and_never_the_response(tok):
    prompt = render_prompt("plain", "Write a funny tweet about Rust " * 20)
    response = "Rust: the borrow checker is my therapist now."
    r = tok.encode(response_text(prompt, response)) + [tok.eos_id]
    stats = EncodeStats()
    ex = encode_example(tok, prompt, response, max_len=len(r) + 4, stats=stats)
    assert len(ex.input_ids) == len(r) + 4 and stats.truncated == 1
    assert ex.input_ids[:5] == tok.encode(prompt)[-5:]  # the END of the prompt ("...\nTweet:") is kept
    assert ex.targets[4:] == r and ex.targets[:4] == [IGNORE] * 4  # the whole response and end token
    assert encode_example(tok, prompt, response, max_len=len(r), stats=stats).input_ids[0] == tok.encode(prompt)[-1]
    assert encode_example(tok, prompt, response, max_len=len(r) - 1, stats=stats) is None  # response alone too long
    assert (stats.encoded, stats.truncated, stats.dropped) == (2, 2, 1)


# --------------------------------------------------------------------------------------------------- batches

def varied_examples(n=500, seed=0):
    rng = random.Random(seed)
    return [Example(list(range(k)), list(range(k)), id=str(i)) for i, k in
            enumerate(rng.randint(5, 200) for _ in range(n))]


def test_batches_replay_per_seed_and_epoch_and_cover_each_example_once():
    examples = varied_examples()
    for group in (True, False):
        order = batches(examples, 8, seed=0, epoch=1, group_by_length=group)
        assert order == batches(examples, 8, seed=0, epoch=1, group_by_length=group)
        assert order != batches(examples, 8, seed=0, epoch=2, group_by_length=group)
        assert order != batches(examples, 8, seed=1, epoch=1, group_by_length=group)
        assert sorted(i for b in order for i in b) == list(range(len(examples)))
        assert sorted(len(b) for b in order)[1:] == [8] * (len(order) - 1)  # at most one short batch
    assert batches(examples, 8, 0, 0, shuffle=False, group_by_length=False)[1] == list(range(8, 16))
    # grouped batches hold similar lengths, but come in shuffled order, not short-then-long
    longest = [max(len(examples[i].input_ids) for i in b) for b in batches(examples, 8, seed=0, epoch=0)]
    assert longest != sorted(longest) and longest[:50] != sorted(longest[:50])


def test_grouping_by_length_cuts_padding():
    examples = varied_examples()
    grouped = pad_fraction(batches(examples, 8, seed=0, epoch=0), examples)
    plain = pad_fraction(batches(examples, 8, seed=0, epoch=0, group_by_length=False), examples)
    assert grouped < plain / 4 and plain > 0.3  # measured ~0.02 vs ~0.45 on these lengths


# ------------------------------------------------------------------------------------------------ all together

def test_prepare_end_to_end(tmp_path, tok):
    rows = [record(i, likes=i * 3, source=("own", "viral")[i % 2]) for i in range(80)] + [{**record(99), "likes": -1}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    cfg = TrainConfig(data=str(path), weights="log", val_fraction=0.2, split_seed=0, on_bad="skip")
    data = prepare(cfg, tok, prompt_format("minimal"), max_len=64, rejects_path=rejects)
    train, val, stats = data.train, data.val, data.stats
    assert stats["rejected"] == 1 and len(rejects.read_text().splitlines()) == 1
    assert len(train) + len(val) == 80 == stats["train_examples"] + stats["val_examples"]
    assert {e.id for e in train}.isdisjoint({e.id for e in val}) and val
    assert abs(sum(e.weight for e in train) / len(train) - 1) < 1e-9  # mean 1 over the training split
    assert stats["weight_max"] > 1 > stats["weight_min"] > 0
    batch = collate([train[i] for i in batches(train, 4, seed=0, epoch=0)[0]], tok.eos_id)
    assert batch["weights"].tolist() == pytest.approx([train[i].weight for i in batches(train, 4, 0, 0)[0]])
    assert json.dumps(stats)  # goes into run_config.json / logs as is


def test_train_on_prompt_trains_on_the_prompt_but_validation_scores_the_response_only(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [record(i) for i in range(60)])
    masked = prepare(TrainConfig(data=str(path), val_fraction=0.2), tok, prompt_format("plain"), max_len=256)
    unmasked = prepare(TrainConfig(data=str(path), val_fraction=0.2, train_on_prompt=True), tok,
                       prompt_format("plain"), max_len=256)
    masked_train, masked_val, open_train, open_val = masked.train, masked.val, unmasked.train, unmasked.val
    n_targets = lambda examples: sum(t != IGNORE for e in examples for t in e.targets)  # noqa: E731
    assert n_targets(open_train) > n_targets(masked_train)  # the switch reaches the training examples...
    assert [e.targets for e in open_val] == [e.targets for e in masked_val]  # ...never the validation ones

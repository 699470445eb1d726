"""Loading your own data: the seed's row format, every bad field named, every malformed input a counted reject or
one DataError naming the file. Hypothesis fuzzes the loader: whatever the bytes, read = kept + rejected + duplicates.
"""

import csv
import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minisft import records as R
from minisft.files import MAX_LINE_BYTES
from minisft.records import DataError, derived_id, load_records

SEED_ROW = {"instruction": "Write a tip tweet about sourdough", "response": "Feed the starter before you sleep.",
            "likes": 12, "comments": 1, "impressions": 900, "topic": "baking", "style": "tip"}


def seed_rows(n):
    return [{**SEED_ROW, "instruction": f"{SEED_ROW['instruction']}, day {i}", "likes": i} for i in range(n)]


def jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------ the seed's format

def test_the_seed_format_loads_with_stable_derived_ids(tmp_path):
    rows = seed_rows(5)
    records, stats = load_records(jsonl(tmp_path / "own.jsonl", rows))
    assert stats.kept == 5 and stats.derived_ids == 5
    ids = [r["id"] for r in records]
    assert ids == [derived_id(r["instruction"], r["response"]) for r in rows] and len(set(ids)) == 5
    assert all(i.startswith("row-") for i in ids)
    again, _ = load_records(jsonl(tmp_path / "reversed.jsonl", rows[::-1]))  # same rows, other order: same ids
    assert {r["response"] + r["instruction"]: r["id"] for r in again} == {
        r["response"] + r["instruction"]: r["id"] for r in records}
    assert records[0]["topic"] == "baking" and records[0]["author"] is None  # any topic; optional fields exist

    path = tmp_path / "own.csv"  # the same rows as a CSV, as a spreadsheet would export them
    pd.DataFrame(rows).to_csv(path, index=False)
    from_csv, _ = load_records(path)
    assert [r["id"] for r in from_csv] == ids and from_csv[3]["likes"] == 3


def test_a_duplicated_explicit_id_and_a_derived_id_collision_are_reported(tmp_path, monkeypatch):
    rows = [{**r, "id": "same"} for r in seed_rows(3)]
    with pytest.raises(DataError) as err:
        load_records(jsonl(tmp_path / "d.jsonl", rows))
    assert "2 of 3 rows are invalid" in str(err.value)
    assert ":2: id: 'same' is also the id of line 1, a different row" in str(err.value)
    kept, stats = load_records(tmp_path / "d.jsonl", on_bad="skip")
    assert (stats.kept, stats.rejected) == (1, 2) and kept[0]["likes"] == 0

    monkeypatch.setattr(R, "derived_id", lambda instruction, response: "row-0000")  # force a hash collision
    with pytest.raises(DataError, match=r":2: id: 'row-0000' is also the id of line 1, a different row"):
        load_records(jsonl(tmp_path / "c.jsonl", seed_rows(2)))
    # an exact duplicate is a duplicate, not a collision
    _, stats = load_records(jsonl(tmp_path / "e.jsonl", [SEED_ROW, SEED_ROW]))
    assert (stats.kept, stats.duplicates, stats.rejected) == (1, 1, 0)


def test_a_bad_row_names_every_bad_field_and_the_flag(tmp_path):
    bad = {"instruction": "  ", "response": "", "likes": -3, "comments": "many", "impressions": 2.5, "topic": 7}
    path = jsonl(tmp_path / "bad.jsonl", [SEED_ROW, bad])
    with pytest.raises(DataError) as err:
        load_records(path)
    msg = str(err.value)
    assert (f"{path}:2: instruction: empty; response: empty; likes: negative count: -3; comments: not a number: "
            "'many'; impressions: not a whole number: 2.5; topic: expected text, got int 7") in msg
    assert msg.endswith("Fix them, or drop them with --on-bad skip: each is then written, with its reasons, to "
                        "rejected_rows.jsonl in the run folder.")
    assert "on_bad=" not in msg  # the flag, not a Python keyword
    _, stats = load_records(path, on_bad="skip", rejects_path=tmp_path / "rej.jsonl")
    written = json.loads((tmp_path / "rej.jsonl").read_text())
    assert [p["field"] for p in written["problems"]] == ["instruction", "response", "likes", "comments",
                                                          "impressions", "topic"]


# ------------------------------------------------------------------------------------- malformed input, by kind

GOOD = json.dumps(SEED_ROW).encode()
HEADER = b"instruction,response,likes\n"


def deep(n):
    return ("[" * n + "]" * n).encode()


# (file name, bytes, (read, kept, rejected, duplicates) or None, the first reject's field / the DataError's text)
MALFORMED = [
    ("bom.jsonl", b"\xef\xbb\xbf" + GOOD + b"\n", (1, 1, 0, 0), None),
    ("crlf.jsonl", GOOD + b"\r\n" + GOOD.replace(b"sourdough", b"rye") + b"\r\n", (2, 2, 0, 0), None),
    ("u2028.jsonl", json.dumps({**SEED_ROW, "response": "one\u2028two"}, ensure_ascii=False).encode() + b"\n",
     (1, 1, 0, 0), None),
    ("latin1.jsonl", GOOD + b"\n" + GOOD.replace(b"sourdough", b"caf\xe9") + b"\n", (2, 1, 1, 0), "(line)"),
    ("deep.jsonl", GOOD + b"\n" + deep(100_000) + b"\n", (2, 1, 1, 0), "(line)"),
    ("longline.jsonl", b'{"instruction": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n' + GOOD + b"\n",
     (2, 1, 1, 0), "(line)"),
    ("bigint.jsonl", GOOD.replace(b'"likes": 12', b'"likes": ' + b"9" * 400) + b"\n", (1, 0, 1, 0), "likes"),
    ("hugeint.jsonl", GOOD.replace(b'"likes": 12', b'"likes": ' + b"9" * 5000) + b"\n", (1, 0, 1, 0), "(line)"),
    ("inf.jsonl", GOOD.replace(b'"likes": 12', b'"likes": Infinity') + b"\n", (1, 0, 1, 0), "likes"),
    ("nan.jsonl", GOOD.replace(b'"likes": 12', b'"likes": NaN') + b"\n", (1, 1, 0, 0), None),  # NaN = no value
    ("empty.jsonl", b"", None, "no data rows: the file is empty"),
    ("blank.jsonl", b"\n\n  \n", None, "no data rows: the file holds no data row"),
    ("bom.csv", b"\xef\xbb\xbf" + HEADER + b"a,b,1\n", (1, 1, 0, 0), None),
    ("crlf.csv", b"instruction,response,likes\r\na,\"b\r\nc\",1\r\n", (1, 1, 0, 0), None),
    ("latin1.csv", HEADER + b"a,caf\xe9,1\nb,ok,2\n", (2, 1, 1, 0), "(line)"),
    ("huge-field.csv", HEADER + b'a,"' + b"x" * 200_000 + b'",1\nb,ok,2\n', (2, 1, 1, 0), "(row)"),
    ("long-text.csv", HEADER + b"a," + b"x" * 120_000 + b",1\n", (1, 0, 1, 0), "response"),
    ("counts.csv", HEADER + b"a,b,1e400\nc,d,inf\ne,f,-Infinity\ng,h,NaN\ni,j," + b"9" * 30 + b"\n",
     (5, 1, 4, 0), "likes"),
    ("header-only.csv", HEADER, None, "no data rows: the file holds no data row"),
    ("empty.csv", b"", None, "no data rows: the file is empty"),
    ("no-response.csv", b"instruction,text\na,b\n", None, "no 'response' column"),
    ("twice.csv", b"instruction,response,response\na,b,c\n", None, "column 'response' appears more than once"),
    ("latin1-header.csv", b"instruction,r\xe9sponse\n", None, "the header: not UTF-8"),
    ("garbage.parquet", b"PAR1 not really", None, "not a readable Parquet file"),
]


@pytest.mark.parametrize("name, data, counts, detail", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_every_malformed_input_is_a_counted_reject_or_one_data_error(tmp_path, name, data, counts, detail):
    path = tmp_path / name
    path.write_bytes(data)
    if counts is None:
        with pytest.raises(DataError) as err:
            load_records(path, on_bad="skip")
        assert str(err.value).startswith(str(path)) and detail in str(err.value)
        return
    rejects = tmp_path / "rejects.jsonl"
    records, stats = load_records(path, on_bad="skip", rejects_path=rejects)
    assert (stats.read, stats.kept, stats.rejected, stats.duplicates) == counts
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert len(written) == stats.rejected
    if detail is not None:
        assert written[0]["problems"][0]["field"] == detail
        with pytest.raises(DataError, match=f"{path.name}:{written[0]['line']}: "):
            load_records(path)  # the default stops, naming the line
    assert all("\r" not in r["response"] for r in records)  # CRLF never reaches the text


def test_parquet_with_wrong_column_types(tmp_path):
    path = tmp_path / "typed.parquet"
    pd.DataFrame({"instruction": ["a", "b", "c"], "response": ["x", "y", "z"],
                  "likes": ["3", "12", "lots"],  # counts stored as text
                  "topic": [1.5, None, 2.0],  # numbers where text belongs
                  "created_at": pd.to_datetime(["2024-01-01", None, "2024-01-03"])}).to_parquet(path)
    records, stats = load_records(path, on_bad="skip")
    assert (stats.read, stats.kept, stats.rejected) == (3, 1, 2)
    assert records[0]["instruction"] == "b" and records[0]["likes"] == 12 and records[0]["created_at"] is None
    with pytest.raises(DataError, match=r"typed\.parquet:1: topic: expected text, got float 1\.5"):
        load_records(path)
    pd.DataFrame({"instruction": ["a"]}).to_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(DataError, match="no 'response' column"):
        load_records(tmp_path / "nocol.parquet")


# ------------------------------------------------------------------------------------------------ fuzzing

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
FIELDS = ["id", "instruction", "response", "likes", "comments", "impressions", "topic", "style", "source",
          "author", "created_at"]
ROWS = st.lists(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5),
                                st.sampled_from(["", "  ", "x", "Write a tweet", "12", "-1", "1e400", "nan",
                                                 "2024-01-01T00:00:00Z", "<|endoftext|>"]) | JSON_VALUES,
                                max_size=12), max_size=12)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_invariant(path):
    try:
        records, stats = load_records(path, on_bad="skip")
    except DataError as e:
        assert str(path) in str(e)
        return
    assert stats.kept + stats.rejected + stats.duplicates == stats.read == stats.kept + stats.rejected + \
        stats.duplicates
    assert len(records) == stats.kept and len({r["id"] for r in records}) == stats.kept
    for r in records:
        assert r["instruction"] and r["response"]
        assert all(r[k] is None or (isinstance(r[k], int) and 0 <= r[k] <= R.MAX_COUNT) for k in R.COUNT_FIELDS)


@FUZZ
@given(rows=ROWS)
def test_fuzz_rows_as_jsonl_csv_and_parquet(tmp_path, rows):
    jsonl(tmp_path / "f.jsonl", [json.dumps(r, default=str) for r in rows])
    check_invariant(tmp_path / "f.jsonl")
    columns = sorted({k for r in rows for k in r if k and "\x00" not in k})
    with open(tmp_path / "f.csv", "w", newline="", encoding="utf-8", errors="surrogatepass") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([json.dumps(r.get(c), default=str) if not isinstance(r.get(c), str) else r.get(c)
                             for c in columns])
    check_invariant(tmp_path / "f.csv")
    try:
        pd.DataFrame(rows).to_parquet(tmp_path / "f.parquet")
    except Exception:  # pyarrow can't store every mix of types in one column; then there is no file to read
        return
    check_invariant(tmp_path / "f.parquet")


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".csv", ".parquet"]))
def test_fuzz_arbitrary_bytes(tmp_path, data, suffix):
    path = tmp_path / f"b{suffix}"
    path.write_bytes(data)
    check_invariant(path)


@FUZZ
@given(lines=st.lists(st.one_of(st.just(GOOD), st.binary(max_size=60), st.just(b"\xff\xfe"), st.just(deep(5000))),
                      max_size=8))
def test_fuzz_good_lines_among_bad_bytes(tmp_path, lines):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(lines))
    check_invariant(path)

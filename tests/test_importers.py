"""Importers: every format read from small fixture files, merged by id, with nothing invented or lost."""

import json
import random
import zipfile
from pathlib import Path

import pytest

from minisft.tweets import importers, platforms, topics
from minisft.tweets.formats import BadInput, parse_count
from minisft.tweets.importers import import_posts

FIX = Path(__file__).parent / "fixtures" / "importers"
ARCHIVE = FIX / "archive"
T1, RT, REPLY, SELF, MEDIA_ONLY, DOCKER = ("1034898740999094272", "1034908547281846272", "1035078542422966272",
                                           "1035089741214646272", "1035497427563446272", "1035829616440246272")
TIL, SELF_DELETED_PARENT = "1036320538751926272", "1036509093688246272"
YAML, CSV_REPLY = "1037012410168246272", "1037297081775030272"
GENERIC_MAP = "text=body,likes=favs,comments=replies,id=tweet_id,created_at=posted_at,impressions=views"
SCHEMA = ["id", "instruction", "response", "likes", "comments", "impressions", "topic", "style", "source",
          "author", "created_at"]


def run(*paths, log=None, **kw):
    lines = [] if log is None else log
    records, invalid = import_posts([str(p) for p in paths], log=lines.append, **kw)
    return {r["id"]: r for r in records}


def zip_folder(folder: Path, dest: Path, top: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, top + f.relative_to(folder).as_posix())
    return dest


# --- numbers and times ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, want", [("1203.0", 1203), ("1,234", 1234), (" 12 ", 12), ("-", None), ("", None),
                                       (None, None), (7, 7), (3.0, 3), ("0", 0)])
def test_parse_count(raw, want):
    assert parse_count(raw, "f: field 'x'") == want


@pytest.mark.parametrize("raw", ["abc", "1.5", "-3", True, [1], "1e400", 10**400, "nan", "inf", 10**16])
def test_parse_count_rejects_non_counts_naming_the_field(raw):
    with pytest.raises(BadInput, match=r"f\.csv: line 3: field 'likes': not a count"):
        parse_count(raw, "f.csv: line 3: field 'likes'")


# --- X archive -----------------------------------------------------------------------------------

def test_archive_keeps_posts_and_threads_skips_retweets_replies_and_empty():
    log = []
    got = run(ARCHIVE, log=log)
    # T1, the self-reply to T1, the self-reply to a deleted tweet of ours, the docker post, the TIL
    assert sorted(got) == sorted([T1, SELF, SELF_DELETED_PARENT, DOCKER, TIL])
    assert "8 read, 5 kept, skipped: empty 1, reply 1, retweet 1" in log[0]
    assert "deleted" not in json.dumps(list(got.values()))  # deleted-tweets.js is not read


def test_archive_has_likes_but_no_impressions_or_comments():
    got = run(ARCHIVE)
    assert got[T1]["likes"] == 12 and got[TIL]["likes"] == 40
    assert all(r["impressions"] is None and r["comments"] is None for r in got.values())
    assert got[T1]["created_at"] == "2018-08-29T20:21:02Z"


def test_archive_unescapes_html_and_expands_or_strips_links():
    expanded = run(ARCHIVE)
    assert expanded[T1]["response"] == ("Hot take: pytest fixtures & parametrize beat unittest <3 "
                                        "https://docs.pytest.org/en/latest/fixture.html")
    assert expanded[TIL]["response"].endswith("> manual bisecting")
    # the link is expanded, the photo link goes
    assert expanded[DOCKER]["response"] == "My docker compose file is longer than my app https://github.com/me/app"
    stripped = run(ARCHIVE, links="strip")
    assert stripped[T1]["response"] == "Hot take: pytest fixtures & parametrize beat unittest <3"
    assert stripped[DOCKER]["response"] == "My docker compose file is longer than my app"
    assert not any("t.co" in r["response"] for d in (expanded, stripped) for r in d.values())


def test_replies_flag_keeps_replies_without_their_leading_mentions():
    assert REPLY not in run(ARCHIVE)
    got = run(ARCHIVE, replies=True)
    assert got[REPLY]["response"] == "Totally agree, rebase before you merge"
    assert RT not in got  # retweets stay out either way


def test_archive_zip_equals_folder_and_old_tweet_js(tmp_path):
    folder = run(ARCHIVE)
    assert run(zip_folder(ARCHIVE, tmp_path / "a.zip")) == folder
    assert run(zip_folder(ARCHIVE, tmp_path / "b.zip", top="twitter-2024-01-01-abc/")) == folder
    assert run(ARCHIVE / "data" / "tweets.js").keys() == {T1, SELF, DOCKER}  # one part file on its own
    old = run(FIX / "old_archive")  # window.YTD.tweet.part0 in data/tweet.js
    assert list(old.values())[0]["response"] == "Old archive format: serverless is just someone else's cron"


# --- X analytics CSVs and the merge by id --------------------------------------------------------

def test_new_analytics_csv_alone():
    log = []
    got = run(FIX / "analytics_new.csv", log=log)
    # Alone, the CSV can only guess: a post that starts with "@" is a reply. (Modern X leaves the
    # "@alice" off the text of a real reply, and an old self-reply starts with "@me".)
    assert "5 read, 3 kept, skipped: reply 2" in log[0]
    assert sorted(got) == sorted([T1, REPLY, YAML])
    assert got[T1]["impressions"] == 1234 and got[T1]["likes"] == 15 and got[T1]["comments"] == 4
    assert got[T1]["response"].endswith("<3")  # a t.co link with nothing to expand to is dropped
    assert got[YAML]["likes"] is None and got[YAML]["comments"] is None and got[YAML]["impressions"] == 880
    # the CSV only has the day; the snowflake id gives the second
    assert got[YAML]["created_at"] == "2018-09-04T16:20:00Z"


def test_legacy_csv_likes_and_favorites():
    got = run(FIX / "analytics_legacy.csv")
    assert got[DOCKER]["impressions"] == 1203 and got[DOCKER]["likes"] == 7 and got[DOCKER]["comments"] == 2
    assert got[TIL]["impressions"] == 5010 and got[TIL]["created_at"] == "2018-09-02T18:30:45Z"
    log = []
    fav = run(FIX / "analytics_legacy_favorites.csv", log=log)
    assert [r["likes"] for r in fav.values()] == [9]
    assert "retweet 1" in log[0]


def test_archive_and_csvs_merge_by_id():
    log = []
    got = run(ARCHIVE, FIX / "analytics_new.csv", FIX / "analytics_legacy.csv", log=log)
    t1 = got[T1]
    # text and exact time from the archive (expanded link), impressions and replies from the CSV,
    # likes: the larger count is the later snapshot
    assert t1["response"].endswith("fixture.html") and t1["created_at"] == "2018-08-29T20:21:02Z"
    assert (t1["likes"], t1["comments"], t1["impressions"]) == (15, 4, 1234)
    assert (got[TIL]["likes"], got[TIL]["impressions"]) == (41, 5010)
    assert got[SELF_DELETED_PARENT]["impressions"] is None  # in no CSV: stays null
    # the archive knows better than the CSV's "@" guess, both ways:
    assert REPLY not in got  # a reply to alice, though its CSV text has no "@alice"
    assert got[SELF]["impressions"] == 512  # a thread of ours, though its CSV text starts with "@me"
    assert got[YAML]["response"].startswith("Unpopular opinion")  # CSV-only rows are kept
    assert any("merged: 4 rows" in line for line in log)
    # inputs in any order give the same records
    assert run(FIX / "analytics_legacy.csv", FIX / "analytics_new.csv", ARCHIVE) == got


# --- Bluesky ---------------------------------------------------------------------------------------

def test_bluesky_skips_reposts_and_replies_keeps_threads(tmp_path):
    log = []
    got = run(FIX / "bluesky_feed.json", log=log)
    assert sorted(k.rsplit("/", 1)[1] for k in got) == ["3kaaa1", "3kaaa3", "3kaaa5"]
    assert "7 read, 3 kept, skipped: empty 1, other_author 1, reply 1, repost 1" in log[0]
    p1 = got["at://did:plc:me3xample/app.bsky.feed.post/3kaaa1"]
    assert (p1["likes"], p1["comments"], p1["impressions"]) == (7, 2, None)
    assert p1["created_at"] == "2024-03-05T14:22:00Z"
    p5 = got["at://did:plc:me3xample/app.bsky.feed.post/3kaaa5"]
    assert p5["likes"] is None and p5["created_at"] == "2024-03-08T07:00:00Z"  # +01:00 -> UTC
    assert len(run(FIX / "bluesky_feed.json", replies=True)) == 4
    # the same pages as JSONL
    pages = json.loads((FIX / "bluesky_feed.json").read_text())
    jsonl = tmp_path / "feed.jsonl"
    jsonl.write_text("\n".join(json.dumps(p) for p in pages) + "\n")
    assert run(jsonl) == got


# --- generic CSV / JSONL ---------------------------------------------------------------------------

def test_generic_csv_with_mapping():
    log = []
    got = run(FIX / "generic.csv", mapping=importers.parse_mapping(GENERIC_MAP), log=log)
    assert "3 read, 2 kept, skipped: empty 1" in log[0]
    assert (got["g1"]["likes"], got["g1"]["comments"], got["g1"]["impressions"]) == (1234, 12, None)
    assert (got["g2"]["likes"], got["g2"]["comments"], got["g2"]["impressions"]) == (1203, None, 5000)
    assert got["g2"]["created_at"] == "2024-01-03T08:30:00Z"


def test_generic_jsonl_without_id_or_time_and_with_given_topic(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text(json.dumps({"body": "rebase or merge?", "favs": 3, "t": "git"}) + "\n"
                    + json.dumps({"body": "no likes field here"}) + "\n")
    mapping = importers.parse_mapping("text=body,likes=favs,topic=t")
    got = {r["response"]: r for r in run(path, mapping=mapping).values()}
    assert got["rebase or merge?"]["likes"] == 3 and got["no likes field here"]["likes"] is None
    assert got["rebase or merge?"]["topic"] == "git"  # given topics are used, missing ones guessed
    assert got["no likes field here"]["topic"] == topics.guess_topic("no likes field here")
    assert got["no likes field here"]["created_at"] is None
    # no id column: the id is a hash of the text, the same on every run and in any row order
    path.write_text("\n".join(reversed(path.read_text().splitlines())) + "\n")
    again = {r["response"]: r["id"] for r in run(path, mapping=mapping).values()}
    assert again == {text: r["id"] for text, r in got.items()}
    assert all(i.startswith("text-") for i in again.values())


def test_generic_errors_name_the_column(tmp_path):
    with pytest.raises(BadInput, match=r"generic\.csv: missing column 'likes_count'"):
        run(FIX / "generic.csv", mapping=importers.parse_mapping("text=body,likes=likes_count"))
    with pytest.raises(BadInput, match="'text=COLUMN' is required"):
        importers.parse_mapping("likes=favs")
    with pytest.raises(BadInput, match="bad entry 'shares=x'"):
        importers.parse_mapping("text=body,shares=x")


def test_generic_keeps_your_own_topics_styles_and_authors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"body": "proofing overnight makes a better crumb", "t": "baking", "s": "rant", "u": "ana"}\n')
    (r,) = run(path, mapping=importers.parse_mapping("text=body,topic=t,style=s,author=u")).values()
    assert (r["topic"], r["style"], r["author"]) == ("baking", "rant", "ana")
    assert "baking" in r["instruction"]


# --- records, CLI, errors --------------------------------------------------------------------------

def test_records_follow_the_schema_with_stable_derived_instructions():
    got = run(ARCHIVE, FIX / "bluesky_feed.json", source="viral")
    for r in got.values():
        assert list(r) == SCHEMA and r["source"] == "viral"
        assert r["topic"] == topics.guess_topic(r["response"]) and r["style"] == topics.guess_style(r["response"])
        assert r["instruction"] == topics.instruction_for(r["topic"], r["style"], random.Random(r["id"]))


def test_cli_output_sorted_and_deterministic(tmp_path, capsys):
    args = [str(ARCHIVE), str(FIX / "analytics_new.csv"), str(FIX / "analytics_legacy.csv"),
            str(FIX / "analytics_legacy_favorites.csv"), str(FIX / "bluesky_feed.json"), str(FIX / "generic.csv"),
            "--map", GENERIC_MAP]
    assert importers.main(args + ["--out", str(tmp_path / "a.jsonl")]) == 0
    assert importers.main(list(reversed(args[:6])) + args[6:] + ["--out", str(tmp_path / "b.jsonl")]) == 0
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes()
    records = [json.loads(line) for line in a.decode().splitlines()]
    keys = [(r["created_at"], r["id"]) for r in records]
    assert keys == sorted(keys) and len(records) == 12
    out = capsys.readouterr().out
    assert "wrote 12 records" in out and "analytics_new.csv (x_analytics): 5 read" in out


def test_cli_reports_errors_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "data" / "tweets.js"
    bad.parent.mkdir()
    bad.write_text('window.YTD.tweets.part0 = [\n  {"tweet": {"id_str": "1",\n  oops}}\n]')
    assert importers.main([str(tmp_path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f"{bad}: line 3: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text, message", [
    ("x/data/tweets.js", "var tweets = []", r"tweets\.js: line 1: expected 'window\.YTD\.tweets\.part0 = \["),
    ("x/data/tweets.js", 'window.YTD.tweets.part0 = [{"tweet": {"id_str": "1", "created_at": "x"}}]',
     r"tweets\.js: item 0: missing or non-string field 'full_text'"),
    ("x/data/tweets.js", 'window.YTD.tweets.part0 = [{"tweet": {"id_str": "1", "full_text": "hi", '
                         '"created_at": "yesterday"}}]', r"item 0: field 'created_at': not a date/time"),
    ("x/data/tweets.js", 'window.YTD.tweets.part0 = [{"tweet": {"id_str": "1", "full_text": "hi", '
                         '"created_at": "Wed Aug 29 20:21:02 +0000 2018", "favorite_count": "lots"}}]',
     r"item 0: field 'favorite_count': not a count: 'lots'"),
    ("a.csv", '"Post id","Date","Post text","Likes"\n"1","Wed, Aug 29, 2018","hi","3"\n"2","x"\n',
     r"a\.csv: line 3: expected 4 cells, like the header; found 2"),
    ("a.csv", '"Post id","Date","Post text","Likes"\n"1","Wed, Aug 29, 2018","hi","many"\n',
     r"a\.csv: line 2: field 'Likes': not a count: 'many'"),
    ("a.csv", '"Tweet id","Tweet text","impressions"\n"1","hi","3"\n', r"a\.csv: missing column 'time'"),
    ("feed.json", '{"feed": [{"post": {"uri": "at://did:x/p/1", "record": {"createdAt": "2024-01-01"}}}]}',
     r"feed\.json: item 0: feed\[0\]: missing or non-string field 'post\.record\.text'"),
    ("feed.jsonl", '{"feed": []}\n{"feed": [\n', r"feed\.jsonl: line 2: invalid JSON"),
    ("feed.json", '{"feed": [{"post": "oops"}]}',
     r"feed\.json: item 0: feed\[0\]: missing or non-string field 'post\.uri'"),
    ("notes.txt", "just some text\n", r"notes\.txt: unknown format; supported formats: X account archive"),
])
def test_bad_input_names_file_line_and_field(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(BadInput, match=message):
        run(path if path.suffix != ".js" else tmp_path / "x")


def test_folder_without_tweets_is_an_error(tmp_path):
    with pytest.raises(BadInput, match="no data/tweets.js"):
        run(tmp_path)
    with pytest.raises(BadInput, match="no such file"):
        run(tmp_path / "missing.zip")


# --- reading exactly like the training loader, limits, counted skips ------------------------------

def test_jsonl_is_split_on_newlines_only_as_the_records_loader_does(tmp_path):
    page = {"feed": [{"post": {"uri": "at://did:plc:me/app.bsky.feed.post/1", "author": {"handle": "me.bsky"},
                               "record": {"text": "one\u2028two\u2029three", "createdAt": "2024-01-01T00:00:00Z"}}}]}
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps(page, ensure_ascii=False) + "\r\n", encoding="utf-8")
    (r,) = run(path).values()
    assert r["response"] == "one\u2028two\u2029three" and r["author"] == "me.bsky"
    generic = tmp_path / "g.jsonl"
    generic.write_text(json.dumps({"body": "a\u2028b"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [r["response"] for r in run(generic, mapping=importers.parse_mapping("text=body")).values()] == ["a\u2028b"]


def test_archive_author_is_the_accounts_username():
    assert {r["author"] for r in run(ARCHIVE).values()} == {"me"}
    assert {r["author"] for r in run(FIX / "analytics_new.csv").values()} == {None}  # the CSV doesn't say


def test_zip_members_are_capped(tmp_path, monkeypatch):
    archive = zip_folder(ARCHIVE, tmp_path / "a.zip")
    monkeypatch.setattr(platforms, "MAX_MEMBER_BYTES", 200)
    with pytest.raises(BadInput, match=r"a\.zip:data/tweets-part1\.js: [\d,]+ bytes uncompressed, over the 200-byte "
                                       r"limit for one archive file \(unpack the archive and pass its folder\)"):
        run(archive)


def test_invalid_rows_stop_the_import_or_are_counted_and_written(tmp_path, capsys):
    path = write(tmp_path, "a.csv", '"Post id","Date","Post text","Likes"\n"1","Wed, Aug 29, 2018","hi","3"\n'
                                    '"2","Wed, Aug 29, 2018","yo","many"\n"3","someday","hey","1"\n')
    with pytest.raises(BadInput, match=r"2 rows can't be read \(first 2 shown\):\n  .*a\.csv: line 3: field 'Likes': "
                                       r"not a count: 'many'\n  .*line 4: field 'Date': not a date/time: 'someday'"
                                       r"\nFix them, or skip them with --on-bad skip"):
        run(path)
    log = []
    records, report = import_posts([str(path)], on_bad="skip", log=log.append)
    assert [r["id"] for r in records] == ["1"] and "3 read, 1 kept, skipped: invalid 2" in log[0]
    assert report["inputs"][0] == {"path": str(path), "format": "x_analytics", "read": 3, "kept": 1,
                                   "skipped": {"invalid": 2}}
    assert importers.main([str(path), "--on-bad", "skip", "--out", str(tmp_path / "own.jsonl")]) == 0
    written = [json.loads(line) for line in (tmp_path / "own.rejected.jsonl").read_text().splitlines()]
    assert [w["raw"]["Post id"] for w in written] == ["2", "3"] and "not a count" in written[0]["problem"]
    assert "wrote the 2 rows that can't be read" in capsys.readouterr().out


def test_undecodable_and_overflowing_inputs_are_bad_input_not_tracebacks(tmp_path):
    js = tmp_path / "x" / "data" / "tweets.js"
    js.parent.mkdir(parents=True)
    js.write_bytes(b'window.YTD.tweets.part0 = [\n{"tweet": {"full_text": "caf\xe9"}}]')
    with pytest.raises(BadInput, match=r"tweets\.js: line 2: not UTF-8 \(byte 0xe9\)"):
        run(tmp_path / "x")
    js.write_bytes(b"window.YTD.tweets.part0 = " + b"[" * 100_000)
    with pytest.raises(BadInput, match="nested too deeply"):
        run(tmp_path / "x")
    tweet = {"id_str": "1", "full_text": "hi", "created_at": "0001-01-01T00:00:00+05:00", "favorite_count": 10**30}
    js.write_text("window.YTD.tweets.part0 = " + json.dumps([{"tweet": tweet}]))
    records, report = import_posts([str(tmp_path / "x")], on_bad="skip", log=lambda _: None)
    assert records == [] and report["inputs"][0]["skipped"] == {"invalid": 1}
    assert "out of range" in report["invalid"][0]["problem"]


# --- fuzzing: whatever the input, a BadInput or every row counted -----------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=3), max_leaves=8)
VALUES = st.sampled_from(["1", "2018-08-29T20:21:02Z", "Wed Aug 29 20:21:02 +0000 2018", "RT @x hi", "@me hi",
                          "hello", "", "-", "1e400", "at://did:plc:me/app.bsky.feed.post/1"]) | ANY_JSON
TWEETS = st.lists(st.fixed_dictionaries({}, optional={
    k: VALUES for k in ("id_str", "full_text", "created_at", "favorite_count", "in_reply_to_status_id_str",
                        "in_reply_to_user_id_str", "entities")}).map(lambda t: {"tweet": t}) | ANY_JSON, max_size=6)
POSTS = st.lists(st.fixed_dictionaries({}, optional={
    "post": st.fixed_dictionaries({}, optional={"uri": VALUES, "author": VALUES | st.fixed_dictionaries(
        {"did": VALUES, "handle": VALUES}), "record": st.fixed_dictionaries({}, optional={
            "text": VALUES, "createdAt": VALUES, "reply": VALUES}), "likeCount": VALUES, "replyCount": VALUES}),
    "reason": VALUES | st.fixed_dictionaries({"$type": VALUES})}) | ANY_JSON, max_size=6)
CELLS = st.lists(st.lists(st.sampled_from(["1", "12", "many", "", "Wed, Aug 29, 2018", "@me x", "hello", "1e400",
                                           "-3", "x\ny"]) | st.text(max_size=10), min_size=0, max_size=6), max_size=6)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_import(paths, mapping=None):
    try:
        records, report = import_posts([str(p) for p in paths], mapping=mapping, on_bad="skip", log=lambda _: None)
    except BadInput:
        return
    for summary in report["inputs"]:
        assert summary["read"] == summary["kept"] + sum(summary["skipped"].values())
    assert sum(s["kept"] for s in report["inputs"]) == len(records) + report["merged"]
    assert len({r["id"] for r in records}) == len(records) and all(r["response"] for r in records)


@FUZZ
@given(items=TWEETS, junk=st.binary(max_size=40))
def test_fuzz_x_archive(tmp_path, items, junk):
    js = tmp_path / "x" / "data" / "tweets.js"
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text("window.YTD.tweets.part0 = " + json.dumps(items, default=str))
    check_import([tmp_path / "x"])
    js.write_bytes(b"window.YTD.tweets.part0 = " + junk)
    check_import([tmp_path / "x"])
    check_import([zip_folder(tmp_path / "x", tmp_path / "x.zip")])


@FUZZ
@given(posts=POSTS, as_lines=st.booleans(), junk=st.binary(max_size=40))
def test_fuzz_bluesky(tmp_path, posts, as_lines, junk):
    path = tmp_path / ("feed.jsonl" if as_lines else "feed.json")
    page = json.dumps({"feed": posts}, default=str)
    path.write_bytes((page + "\n").encode() + (junk + b"\n" if as_lines else b""))
    check_import([path])


@FUZZ
@given(rows=CELLS, junk=st.binary(max_size=40))
def test_fuzz_csvs(tmp_path, rows, junk):
    import csv as _csv

    path = tmp_path / "a.csv"
    with open(path, "w", newline="", encoding="utf-8", errors="surrogatepass") as f:
        writer = _csv.writer(f)
        writer.writerow(["Post id", "Date", "Post text", "Likes", "Replies", "Impressions"])
        writer.writerows(rows)
    with open(path, "ab") as f:
        f.write(junk)
    check_import([path])
    check_import([path], mapping=importers.parse_mapping("text=Post text,id=Post id,likes=Likes,created_at=Date,"
                                                         "topic=Replies,author=Impressions"))


@FUZZ
@given(lines=st.lists(ANY_JSON | st.dictionaries(st.sampled_from(["body", "favs", "id", "when"]), VALUES, max_size=4),
                      max_size=6), junk=st.binary(max_size=30))
def test_fuzz_generic_jsonl(tmp_path, lines, junk):
    path = tmp_path / "g.jsonl"
    path.write_bytes(b"".join(json.dumps(v, default=str).encode() + b"\n" for v in lines) + junk)
    check_import([path], mapping=importers.parse_mapping("text=body,likes=favs,id=id,created_at=when"))

"""Turn exports of real posts into SFT records (instruction -> tweet, with engagement metadata).

    python -m minisft.importers twitter-archive.zip account_analytics_content.csv --out data/own.jsonl

Scrapers stopped working in 2023, so we read what people can download themselves:
  x_archive         the X account archive (.zip, unpacked folder, or its data/tweets.js)
  x_analytics       X analytics CSV, new ("Post id", ...) or legacy ("Tweet id", ...) header
  bluesky           app.bsky.feed.getAuthorFeed JSON (one page, a JSON array of pages, or JSONL)
  generic           any CSV/JSONL, with --map text=body,likes=favs,...

Every reader returns "rows": {id, text, likes, comments, impressions, created_at, author, skip}, where skip is
None or the reason the row is not training data (retweet, reply, ..., or "invalid" for a row we can't read, with
its problem). One place (import_posts) decides what is kept, merges rows that share an id, and counts every row:
read = kept + skipped for each input, so nothing disappears without showing up in the summary. A metric a source
lacks is None, never 0: a model conditioned on "0 likes" would learn that the post flopped, which we do not know.
JSON Lines and CSV are read line by line exactly as the training loader reads them (files.py).
"""

import argparse
import csv
import hashlib
import html
import io
import json
import random
import re
import sys
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from minisft import topics
from minisft.files import DataError, csv_table, jsonl_rows
from minisft.records import MAX_COUNT, short_repr

SUPPORTED = ("supported formats: X account archive (folder, .zip or data/tweets.js), X analytics CSV "
             "('Post id' or legacy 'Tweet id' header), Bluesky getAuthorFeed JSON/JSONL, "
             "or any CSV/JSONL together with --map text=COLUMN,...")
METRICS = ("likes", "comments", "impressions")
MAP_FIELDS = ("id", "text", "created_at", *METRICS, "instruction", "topic", "style", "author")
MAX_MEMBER_BYTES = 1 << 30  # a zip member is read only up to 1 GiB uncompressed: a zip bomb can't fill memory
SHOWN_PROBLEMS = 5

TCO = re.compile(r"[ \t]*https?://t\.co/\w+")        # t.co short links, with the space before them
LEADING_MENTIONS = re.compile(r"^(?:@\w+\s+)+")      # "@alice @bob " that X puts in front of replies
ARCHIVE_FILE = re.compile(r"^tweets?(?:-part\d+)?\.js$")  # tweets.js, tweets-part1.js, old tweet.js
YTD_PREFIX = re.compile(r"^\s*window\.YTD\.[\w.]+\s*=\s*")
TWITTER_EPOCH_MS = 1288834974657  # snowflake ids carry their creation time: (id >> 22) + epoch


class BadInput(ValueError):
    """An input we cannot read; the message names the file, the line/row and the field."""


# --- Values -----------------------------------------------------------------------------------------

def parse_count(value, where: str) -> int | None:
    """'1,234' / '1203.0' / ' 12 ' / 7 -> int;  '-' / '' / None -> None (the source lacks it)."""
    raw = value.strip().replace(",", "") if isinstance(value, str) else value
    if raw is None or raw in ("", "-"):
        return None
    try:
        number = float(raw) if isinstance(raw, (int, float, str)) and not isinstance(raw, bool) else -1.0
    except (ValueError, OverflowError):
        number = -1.0
    if not 0 <= number <= MAX_COUNT or not number.is_integer():  # NaN fails both comparisons
        raise BadInput(f"{where}: not a count: {short_repr(value)}")
    return int(number)


TIME_FORMATS = ("%a %b %d %H:%M:%S %z %Y",  # archive:        Wed Aug 29 20:21:02 +0000 2018
                "%Y-%m-%d %H:%M %z",        # legacy CSV:     2018-08-29 20:21 +0000
                "%a, %b %d, %Y")            # new CSV (date): Sat, Dec 13, 2025


def parse_time(value, where: str) -> datetime:
    """Any timestamp our sources use -> an aware UTC datetime (naive ones are taken as UTC)."""
    text, when = str(value).strip(), None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        for fmt in TIME_FORMATS:
            try:
                when = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if when is None:
        raise BadInput(f"{where}: not a date/time: {short_repr(value)}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # year 1 with a positive offset falls off the calendar
        raise BadInput(f"{where}: date/time out of range: {short_repr(value)}") from None


def iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def snowflake_time(post_id: str) -> datetime | None:
    if not post_id.isdigit() or int(post_id) >> 22 == 0:
        return None
    try:
        return datetime.fromtimestamp(((int(post_id) >> 22) + TWITTER_EPOCH_MS) / 1000, timezone.utc)
    except (OverflowError, ValueError, OSError):  # an id too large to be a real snowflake
        return None


def clean_x_text(text: str, urls: list, links: str, reply: bool) -> str:
    """X text -> what a person reads: entities unescaped, links expanded (or gone), no t.co noise."""
    text = html.unescape(text)  # the archive stores "&amp;" / "&lt;" / "&gt;" as HTML entities
    if reply:
        text = LEADING_MENTIONS.sub("", text)
    if links == "expand":
        for u in urls:
            if isinstance(u.get("url"), str) and isinstance(u.get("expanded_url"), str) and u["url"]:
                text = text.replace(u["url"], u["expanded_url"])
    # What is left are media links (photos live in the archive, not in the text) and links we
    # cannot expand. A t.co hash means nothing to the model, so it goes.
    return TCO.sub("", text).strip()


def row(post_id, text, created_at, likes=None, comments=None, impressions=None, skip=None, author=None) -> dict:
    return {"id": str(post_id), "text": text, "created_at": created_at, "likes": likes,
            "comments": comments, "impressions": impressions, "author": author, "skip": skip}


def invalid(problem: str, raw) -> dict:
    """A row we could not read: counted as skipped ("invalid"), listed with its problem, never dropped silently."""
    return {"id": None, "text": "", "skip": "invalid", "problem": problem, "raw": raw}


def _obj(x) -> dict:
    return x if isinstance(x, dict) else {}


def _str(x) -> str | None:
    return x if isinstance(x, str) else None


def decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise BadInput(f"{where}: line {line}: not UTF-8 (byte {data[e.start]:#04x})") from None


def load_json_document(text: str, where: str):
    """One whole JSON document (an archive file, a page array): a fault is one BadInput naming its line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: line {e.lineno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise BadInput(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise BadInput(f"{where}: invalid JSON: {e}") from None


# --- X account archive ------------------------------------------------------------------------------

def read_member(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise BadInput(f"{where}: {info.file_size:,} bytes uncompressed, over the {MAX_MEMBER_BYTES:,}-byte limit "
                       "for one archive file (unpack the archive and pass its folder)")
    with zf.open(name) as f:
        data = f.read(MAX_MEMBER_BYTES + 1)  # the size in the zip's directory can lie: never read past the limit
    if len(data) > MAX_MEMBER_BYTES:
        raise BadInput(f"{where}: more than {MAX_MEMBER_BYTES:,} bytes uncompressed (its zip entry said "
                       f"{info.file_size:,})")
    return data


def archive_files(path: Path, pattern: re.Pattern = ARCHIVE_FILE) -> list[tuple[str, str]]:
    """(name for messages, text) of every archive file matching `pattern` in a folder, a .zip, or one .js file."""
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = sorted(n for n in zf.namelist() if pattern.match(Path(n).name) and "__MACOSX" not in n)
                return [(f"{path}:{n}", decode(read_member(zf, n, f"{path}:{n}"), f"{path}:{n}")) for n in names]
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as e:
            raise BadInput(f"{path}: a broken or unsupported zip file: {e}") from None
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.js") if pattern.match(p.name))
        return [(str(p), decode(p.read_bytes(), str(p))) for p in files]
    return [(str(path), decode(path.read_bytes(), str(path)))] if pattern is ARCHIVE_FILE else []


def load_ytd(text: str, where: str):
    """Archive files are JavaScript: 'window.YTD.tweets.part0 = [...]'. Drop the prefix, parse JSON."""
    prefix = YTD_PREFIX.match(text)
    if not prefix:
        raise BadInput(f"{where}: line 1: expected 'window.YTD.tweets.part0 = [' (an X archive file)")
    # the prefix holds no newline, so JSON line numbers are file line numbers
    return load_json_document(text[prefix.end():], where)


def archive_author(path: Path) -> str | None:
    """The account's @username from the archive's data/account.js, when it has one."""
    for where, text in archive_files(path, re.compile(r"^account\.js$")):
        try:
            accounts = load_ytd(text, where)
        except BadInput:
            return None
        for item in accounts if isinstance(accounts, list) else []:
            name = _str(_obj(_obj(item).get("account")).get("username"))
            if name:
                return name
    return None


def read_x_archive(path: Path, replies: bool = False, links: str = "expand") -> list[dict]:
    tweets, rows = [], []
    for where, text in archive_files(path):
        items = load_ytd(text, where)
        if not isinstance(items, list):
            raise BadInput(f"{where}: expected a JSON array of {{'tweet': ...}} items")
        for i, item in enumerate(items):
            tweet = _obj(item).get("tweet", item)
            if not isinstance(tweet, dict):
                rows.append(invalid(f"{where}: item {i}: expected an object with a 'tweet' field", item))
                continue
            tweet = {**tweet, "full_text": tweet.get("full_text", tweet.get("text"))}  # the oldest call it "text"
            missing = [f for f in ("id_str", "full_text", "created_at") if not isinstance(tweet.get(f), str)]
            if missing:
                rows.append(invalid(f"{where}: item {i}: missing or non-string field '{missing[0]}'", item))
            else:
                tweets.append((f"{where}: item {i}", tweet))
    if not tweets and not rows:
        raise BadInput(f"{path}: no data/tweets.js (or tweets-partN.js / tweet.js) found; {SUPPORTED}")
    ids = {t["id_str"] for _, t in tweets}
    # Whoever we reply to when answering a tweet of this archive is us: that finds our user id,
    # which catches self-replies to tweets that have since been deleted.
    me = {_str(t.get("in_reply_to_user_id_str")) for _, t in tweets
          if _str(t.get("in_reply_to_status_id_str")) in ids}
    me.discard(None)
    author = archive_author(path)
    for where, t in tweets:
        text = t["full_text"]
        to_status, to_user = _str(t.get("in_reply_to_status_id_str")), _str(t.get("in_reply_to_user_id_str"))
        # A reply to one of our own tweets is a thread: keep it. Replies to others lean on a
        # conversation the model never sees, so they are opt-in.
        if text.startswith("RT @"):
            skip = "retweet"
        elif (to_status or to_user) and to_status not in ids and to_user not in me and not replies:
            skip = "reply"
        else:
            skip = None
        urls = [u for u in _obj(t.get("entities")).get("urls") or [] if isinstance(u, dict)]
        try:
            rows.append(row(t["id_str"], clean_x_text(text, urls, links, bool(to_status or to_user)),
                            iso(parse_time(t["created_at"], f"{where}: field 'created_at'")),
                            likes=parse_count(t.get("favorite_count"), f"{where}: field 'favorite_count'"),
                            skip=skip, author=author))
        except BadInput as e:
            rows.append(invalid(str(e), t))
    return rows


# --- CSV files (X analytics and generic) ------------------------------------------------------------

def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict | None, str | None]]]:
    """Header and (line number, row, problem) triples: row None and the problem when the line is unreadable."""
    try:
        header, rows = csv_table(path)
        return header, [(n, None if bad else dict(zip(header, cells)), bad and f"{path}: line {n}: {bad.reason}")
                        for n, cells, bad in rows]
    except DataError as e:  # the header itself is unreadable: the whole file is
        raise BadInput(str(e)) from None


def find_column(header: list[str], path: Path, *names: str, required: bool = True) -> str | None:
    """The header's spelling of the first of `names` present (case-insensitive)."""
    lower = {h.lower(): h for h in header}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    if required:
        raise BadInput(f"{path}: missing column '{names[0]}' (header: {', '.join(header)})")
    return None


def read_x_analytics(path: Path, replies: bool = False, links: str = "expand") -> list[dict]:
    header, rows = read_csv_rows(path)
    new = find_column(header, path, "post id", required=False) is not None
    col = {"id": find_column(header, path, "post id" if new else "tweet id"),
           "text": find_column(header, path, "post text" if new else "tweet text"),
           "time": find_column(header, path, "date" if new else "time"),
           "likes": find_column(header, path, "likes", "favorites", required=False),
           "comments": find_column(header, path, "replies", required=False),
           "impressions": find_column(header, path, "impressions", required=False)}
    out = []
    for line, r, problem in rows:
        if problem:
            out.append(invalid(problem, None))
            continue
        try:
            out.append(analytics_row(r, col, f"{path}: line {line}", replies, links))
        except BadInput as e:
            out.append(invalid(str(e), r))
    return out


def analytics_row(r: dict, col: dict, where: str, replies: bool, links: str) -> dict:
    post_id = r[col["id"]].strip()
    if not post_id.isdigit():
        raise BadInput(f"{where}: field '{col['id']}': not a post id: {short_repr(post_id)}")
    when = parse_time(r[col["time"]], f"{where}: field '{col['time']}'")
    # The new export only has the day. The id itself knows the second (snowflake), so use it
    # when it agrees with that day (the column is in the exporter's time zone: allow a day).
    exact = snowflake_time(post_id)
    if exact and abs(exact - when) <= timedelta(days=1, hours=12):
        when = exact
    text = r[col["text"]]
    # The CSV does not say what a post replies to; X starts a reply with the @handles it answers.
    # When an archive holds the same id, its decision wins (see import_posts).
    skip = "retweet" if text.startswith("RT @") else None
    if skip is None and text.startswith("@") and not replies:
        skip = "reply"
    metrics = {k: parse_count(r[c], f"{where}: field '{c}'") if c else None for k, c in col.items() if k in METRICS}
    return row(post_id, clean_x_text(text, [], links, reply=text.startswith("@")), iso(when), skip=skip, **metrics)


# --- Bluesky ----------------------------------------------------------------------------------------

def load_json_pages(path: Path) -> list[tuple[str, object]]:
    """A JSON document (object or array: 'item 3') or JSON Lines ('line 3'), as (where, value) pairs.

    JSON Lines go through files.jsonl_rows, the training loader's own line reader: a line that is not JSON
    comes back as a records.BadField value, for the caller to count as an invalid row.
    """
    if path.suffix.lower() != ".jsonl":
        data = path.read_bytes()
        try:
            doc = load_json_document(decode(data, str(path)), str(path))
            return [(f"item {i}", value) for i, value in enumerate(doc if isinstance(doc, list) else [doc])]
        except BadInput:
            if len([ln for ln in data.split(b"\n") if ln.strip()]) < 2:  # not JSON Lines either
                raise
    return [(f"line {n}", value) for n, _, value in jsonl_rows(path)]


def read_bluesky(path: Path, replies: bool = False) -> list[dict]:
    items, out = [], []  # items: (where, item, post)
    for where, page in load_json_pages(path):
        if hasattr(page, "reason"):
            out.append(invalid(f"{path}: {where}: {page.reason}", None))
            continue
        if not isinstance(_obj(page).get("feed"), list):
            out.append(invalid(f"{path}: {where}: expected a getAuthorFeed page {{'feed': [...]}}", page))
            continue
        for i, item in enumerate(page["feed"]):
            post = _obj(_obj(item).get("post"))
            record = _obj(post.get("record"))
            for name, value in (("post.uri", post.get("uri")), ("post.record.text", record.get("text")),
                                ("post.record.createdAt", record.get("createdAt"))):
                if not isinstance(value, str):
                    out.append(invalid(f"{path}: {where}: feed[{i}]: missing or non-string field '{name}'", item))
                    break
            else:
                items.append((f"{path}: {where}: feed[{i}]", _obj(item), post))

    def author(post):  # at://did:plc:abc/app.bsky.feed.post/3k... -> did:plc:abc
        return _str(_obj(post.get("author")).get("did")) or (post["uri"].split("/") + ["", "", ""])[2]

    # The feed's owner: whoever wrote the posts that are not reposts.
    own = Counter(author(post) for _, item, post in items if not item.get("reason"))
    owner = own.most_common(1)[0][0] if own else None
    for where, item, post in items:
        record = post["record"]
        parent = _str(_obj(_obj(record.get("reply")).get("parent")).get("uri")) or ""
        if "repost" in str(_obj(item.get("reason")).get("$type", "")).lower():
            skip = "repost"
        elif author(post) != owner:
            skip = "other_author"
        elif parent and not parent.startswith(f"at://{owner}/") and not replies:
            skip = "reply"  # a reply in our own thread (parent is ours) is kept
        else:
            skip = None
        try:
            out.append(row(post["uri"], record["text"].strip(),
                           iso(parse_time(record["createdAt"], f"{where}: field 'post.record.createdAt'")),
                           likes=parse_count(post.get("likeCount"), f"{where}: field 'post.likeCount'"),
                           comments=parse_count(post.get("replyCount"), f"{where}: field 'post.replyCount'"),
                           skip=skip, author=_str(_obj(post.get("author")).get("handle")) or author(post)))
        except BadInput as e:
            out.append(invalid(str(e), item))
    return out


# --- Generic CSV / JSONL with a column mapping ------------------------------------------------------

def parse_mapping(spec: str) -> dict[str, str]:
    """'text=body,likes=favs' -> {'text': 'body', 'likes': 'favs'}."""
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, sep, column = part.partition("=")
        if not sep or not column.strip() or field.strip() not in MAP_FIELDS:
            raise BadInput(f"--map: bad entry {part!r}: expected FIELD=COLUMN, FIELD in {', '.join(MAP_FIELDS)}")
        mapping[field.strip()] = column.strip()
    if "text" not in mapping:
        raise BadInput("--map: 'text=COLUMN' is required (the column holding the post text)")
    return mapping


def read_generic(path: Path, mapping: dict[str, str]) -> list[dict]:
    out, rows = [], []  # rows: (where, {field: value}, raw)
    if path.suffix.lower() == ".csv":
        header, lines = read_csv_rows(path)
        column = {f: find_column(header, path, c) for f, c in mapping.items()}
        for n, r, problem in lines:
            if problem:
                out.append(invalid(problem, None))
            else:
                rows.append((f"line {n}", {f: r[column[f]] for f in mapping}, r))
    else:
        for where, value in load_json_pages(path):
            if not isinstance(value, dict):
                reason = value.reason if hasattr(value, "reason") else "expected a JSON object"
                out.append(invalid(f"{path}: {where}: {reason}", None if hasattr(value, "reason") else value))
            else:
                rows.append((where, {f: value.get(c) for f, c in mapping.items()}, value))
        for field, column in mapping.items():
            if rows and not any(column in raw for _, _, raw in rows):
                raise BadInput(f"{path}: column '{column}' (for {field}) is in no line")
    for where, r, raw in rows:
        try:
            out.append(generic_row(r, mapping, f"{path}: {where}: field"))
        except BadInput as e:
            out.append(invalid(str(e), raw))
    return out


def generic_row(r: dict, mapping: dict, where: str) -> dict:
    text = "" if r["text"] is None else str(r["text"]).strip()
    # No id column: a hash of the text is stable across runs and re-orderings of the file.
    has_id = r.get("id") not in (None, "")
    post_id = str(r["id"]).strip() if has_id else "text-" + hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]
    when = r.get("created_at") and iso(parse_time(r["created_at"], f"{where} '{mapping['created_at']}'"))
    metrics = {m: parse_count(r.get(m), f"{where} '{mapping.get(m)}'") for m in METRICS}
    # Topic, style and author are taken as given: your own topics ("cooking") are as welcome as the built-in ones.
    given = {k: str(r[k]).strip() for k in ("instruction", "topic", "style") if r.get(k) not in (None, "")}
    author = str(r["author"]).strip() if r.get("author") not in (None, "") else None
    return {**row(post_id, text, when or None, author=author, **metrics), **given}


# --- Detection, merging, records --------------------------------------------------------------------

def detect_format(path: Path, mapping: dict | None = None) -> str:
    if not path.exists():
        raise BadInput(f"{path}: no such file or folder")
    if path.is_dir() or zipfile.is_zipfile(path) or path.suffix == ".js":
        return "x_archive"
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        head = f.read(65536)
    if YTD_PREFIX.match(head):
        return "x_archive"
    try:
        first = next(csv.reader(io.StringIO(head)), [])
    except csv.Error:  # a stray quote or a bare CR: not a CSV header we know
        first = []
    columns = {c.strip().lower() for c in first}
    if {"post id", "post text"} <= columns or {"tweet id", "tweet text"} <= columns:
        return "x_analytics"
    if re.match(r'\s*[\[{]', head) and re.search(r'"feed"\s*:', head):
        return "bluesky"
    if mapping:
        return "generic"
    raise BadInput(f"{path}: unknown format; {SUPPORTED}")


def merge_into(kept: dict, new: dict) -> None:
    """Same post from two inputs. Text, time and author: the first input (archives go first) wins.
    Counts only grow, so the larger one is the fresher snapshot."""
    for key in ("text", "created_at", "author", "instruction", "topic", "style"):
        if not kept.get(key) and new.get(key):
            kept[key] = new[key]
    for m in METRICS:
        values = [v for v in (kept[m], new[m]) if v is not None]
        kept[m] = max(values) if values else None


def to_record(post: dict, source: str) -> dict:
    """A kept row -> the shipped schema. The instruction is invented from the text, seeded by the id
    so re-running the importer gives the same pairs."""
    topic = post.get("topic") or topics.guess_topic(post["text"])
    style = post.get("style") or topics.guess_style(post["text"])
    rng = random.Random(post["id"])  # a str seed goes through SHA-512: the same on every run and machine
    instruction = post.get("instruction") or topics.instruction_for(topic, style, rng)
    return {"id": post["id"], "instruction": instruction, "response": post["text"],
            "likes": post["likes"], "comments": post["comments"], "impressions": post["impressions"],
            "topic": topic, "style": style, "source": source, "author": post.get("author"),
            "created_at": post["created_at"]}


def read_input(p: Path, replies: bool, links: str, mapping: dict | None) -> tuple[str, list[dict]]:
    fmt = detect_format(p, mapping)
    if fmt == "x_archive":
        return fmt, read_x_archive(p, replies, links)
    if fmt == "x_analytics":
        return fmt, read_x_analytics(p, replies, links)
    if fmt == "bluesky":
        return fmt, read_bluesky(p, replies)
    return fmt, read_generic(p, mapping)


def import_posts(paths, replies=False, links="expand", source="own", mapping=None, on_bad="error",
                 log=print) -> tuple[list[dict], dict]:
    """Read every input, keep what is training data, merge by id: (sorted records, report).

    report: {"inputs": [{path, format, read, kept, skipped: {reason: n}}], "merged": n, "invalid": [rows]}, where
    read = kept + skipped for each input, and the kept rows of all inputs = the records + the merged rows.
    An invalid row (a bad count, date, or line) stops the import with the first few problems when on_bad is
    "error"; with "skip" it is counted in the summary and returned in report["invalid"] for the rejects file.
    """
    batches = []
    for p in map(Path, paths):
        try:
            batches.append((p, *read_input(p, replies, links, mapping)))
        except OSError as e:
            raise BadInput(f"{p}: can't be read: {e.strerror or e}") from None
    invalids = [r for _, _, rows in batches for r in rows if r["skip"] == "invalid"]
    if invalids and on_bad == "error":
        shown = [r["problem"] for r in invalids[:SHOWN_PROBLEMS]]
        rows = "1 row" if len(invalids) == 1 else f"{len(invalids)} rows"
        raise BadInput(f"{rows} can't be read (first {len(shown)} shown):\n  " + "\n  ".join(shown)
                       + "\nFix them, or skip them with --on-bad skip: they are then counted as 'invalid' and "
                         "written to a .rejected.jsonl file next to --out.")
    # The archive knows what each tweet replies to; a CSV only guesses from a leading "@".
    decided = {r["id"]: r["skip"] for _, fmt, rows in batches if fmt == "x_archive" for r in rows
               if r["skip"] != "invalid"}
    merged, n_merged, inputs = {}, 0, []
    for p, fmt, rows in sorted(batches, key=lambda b: b[1] != "x_archive"):  # stable: archives first
        reasons = Counter()
        for r in rows:
            skip = r["skip"] if r["skip"] == "invalid" else decided.get(r["id"], r["skip"])
            skip = skip or (None if r["text"] else "empty")
            if skip:
                reasons[skip] += 1
            elif r["id"] in merged:
                merge_into(merged[r["id"]], r)
                n_merged += 1
            else:
                merged[r["id"]] = dict(r)
        kept = len(rows) - sum(reasons.values())
        inputs.append({"path": str(p), "format": fmt, "read": len(rows), "kept": kept, "skipped": dict(reasons)})
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
        log(f"{p} ({fmt}): {len(rows)} read, {kept} kept, skipped: {skipped}")
    log(f"merged: {n_merged} rows joined a post with the same id from an earlier row -> {len(merged)} posts")
    records = [to_record(r, source) for r in merged.values()]
    records.sort(key=lambda r: (r["created_at"] or "", r["id"]))
    return records, {"inputs": inputs, "merged": n_merged, "invalid": invalids}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minisft.importers", description=__doc__.split("\n\n")[0],
                                 epilog=SUPPORTED)
    ap.add_argument("paths", nargs="+", help="exports to read; the format of each is detected")
    ap.add_argument("--out", required=True, help="output JSONL in the training record schema")
    ap.add_argument("--replies", action="store_true",
                    help="also keep replies to other people (threads of your own are always kept)")
    ap.add_argument("--links", choices=("expand", "strip"), default="expand",
                    help="t.co links: expand to the real URL when the archive knows it, or strip them")
    ap.add_argument("--source", default="own", help="value of the 'source' field of every record (default: own)")
    ap.add_argument("--map", default=None,
                    help="column mapping for a generic CSV/JSONL, e.g. text=body,likes=favs,id=tweet_id,author=user")
    ap.add_argument("--on-bad", choices=("error", "skip"), default="error",
                    help="a row that can't be read: stop naming it (error), or count it and write it to "
                         "<out>.rejected.jsonl (skip)")
    args = ap.parse_args(argv)
    try:
        mapping = parse_mapping(args.map) if args.map else None
        records, report = import_posts(args.paths, args.replies, args.links, args.source, mapping, args.on_bad)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} records to {out}")
    invalids = report["invalid"]
    if invalids:
        rejects = out.with_name(out.name.removesuffix(".jsonl") + ".rejected.jsonl")
        with open(rejects, "w", encoding="utf-8") as f:
            for r in invalids:
                f.write(json.dumps({"problem": r["problem"], "raw": r["raw"]}, ensure_ascii=False, default=str) + "\n")
        print(f"wrote the {len(invalids)} rows that can't be read, with their problems, to {rejects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn exports of real posts into SFT records (instruction -> tweet, with engagement metadata).

    python -m minisft.importers twitter-archive.zip account_analytics_content.csv --out data/own.jsonl

Scrapers stopped working in 2023, so we read what people can download themselves:
  x_archive         the X account archive (.zip, unpacked folder, or its data/tweets.js)
  x_analytics       X analytics CSV, new ("Post id", ...) or legacy ("Tweet id", ...) header
  bluesky           app.bsky.feed.getAuthorFeed JSON (one page, a JSON array of pages, or JSONL)
  generic           any CSV/JSONL, with --map text=body,likes=favs,...

Every reader returns "rows": {id, text, likes, comments, impressions, created_at, skip}, where skip
is None or the reason the row is not training data (retweet, reply, ...). One place (import_posts)
decides what is kept, merges rows that share an id, and counts every row, so nothing disappears
without showing up in the summary. A metric a source lacks is None, never 0: a model conditioned on
"0 likes" would learn that the post flopped, which we do not know.
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

SUPPORTED = ("supported formats: X account archive (folder, .zip or data/tweets.js), X analytics CSV "
             "('Post id' or legacy 'Tweet id' header), Bluesky getAuthorFeed JSON/JSONL, "
             "or any CSV/JSONL together with --map text=COLUMN,...")
METRICS = ("likes", "comments", "impressions")
MAP_FIELDS = ("id", "text", "created_at", *METRICS, "instruction", "topic", "style")

TCO = re.compile(r"[ \t]*https?://t\.co/\w+")        # t.co short links, with the space before them
LEADING_MENTIONS = re.compile(r"^(?:@\w+\s+)+")      # "@alice @bob " that X puts in front of replies
ARCHIVE_FILE = re.compile(r"^tweets?(?:-part\d+)?\.js$")  # tweets.js, tweets-part1.js, old tweet.js
YTD_PREFIX = re.compile(r"^\s*window\.YTD\.[\w.]+\s*=\s*")
TWITTER_EPOCH_MS = 1288834974657  # snowflake ids carry their creation time: (id >> 22) + epoch


class BadInput(ValueError):
    """An input file we cannot read; the message names the file, the line/row and the field."""


# --- Values -----------------------------------------------------------------------------------------

def parse_count(value, where: str) -> int | None:
    """'1,234' / '1203.0' / ' 12 ' / 7 -> int;  '-' / '' / None -> None (the source lacks it)."""
    raw = value.strip().replace(",", "") if isinstance(value, str) else value
    if raw is None or raw in ("", "-"):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(raw, bool) or number < 0 or not number.is_integer():
        raise BadInput(f"{where}: not a count: {value!r}")
    return int(number)


TIME_FORMATS = ("%a %b %d %H:%M:%S %z %Y",  # archive:        Wed Aug 29 20:21:02 +0000 2018
                "%Y-%m-%d %H:%M %z",        # legacy CSV:     2018-08-29 20:21 +0000
                "%a, %b %d, %Y")            # new CSV (date): Sat, Dec 13, 2025


def parse_time(value, where: str) -> datetime:
    """Any timestamp our sources use -> an aware UTC datetime (naive ones are taken as UTC)."""
    text = str(value).strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        for fmt in TIME_FORMATS:
            try:
                when = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise BadInput(f"{where}: not a date/time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def snowflake_time(post_id: str) -> datetime | None:
    if not post_id.isdigit() or int(post_id) >> 22 == 0:
        return None
    return datetime.fromtimestamp(((int(post_id) >> 22) + TWITTER_EPOCH_MS) / 1000, timezone.utc)


def clean_x_text(text: str, urls: list, links: str, reply: bool) -> str:
    """X text -> what a person reads: entities unescaped, links expanded (or gone), no t.co noise."""
    text = html.unescape(text)  # the archive stores "&amp;" / "&lt;" / "&gt;" as HTML entities
    if reply:
        text = LEADING_MENTIONS.sub("", text)
    if links == "expand":
        for u in urls:
            if u.get("url") and u.get("expanded_url"):
                text = text.replace(u["url"], u["expanded_url"])
    # What is left are media links (photos live in the archive, not in the text) and links we
    # cannot expand. A t.co hash means nothing to the model, so it goes.
    return TCO.sub("", text).strip()


def row(post_id, text, created_at, likes=None, comments=None, impressions=None, skip=None) -> dict:
    return {"id": str(post_id), "text": text, "created_at": created_at, "likes": likes,
            "comments": comments, "impressions": impressions, "skip": skip}


# --- X account archive ------------------------------------------------------------------------------

def archive_files(path: Path) -> list[tuple[str, str]]:
    """(name for messages, text) of every tweets file in a folder, a .zip, or one .js file."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist()
                           if ARCHIVE_FILE.match(Path(n).name) and "__MACOSX" not in n)
            return [(f"{path}:{n}", zf.read(n).decode("utf-8-sig")) for n in names]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.js") if ARCHIVE_FILE.match(p.name))
        return [(str(p), p.read_text(encoding="utf-8-sig")) for p in files]
    return [(str(path), path.read_text(encoding="utf-8-sig"))]


def load_ytd(text: str, where: str):
    """Archive files are JavaScript: 'window.YTD.tweets.part0 = [...]'. Drop the prefix, parse JSON."""
    prefix = YTD_PREFIX.match(text)
    if not prefix:
        raise BadInput(f"{where}: line 1: expected 'window.YTD.tweets.part0 = [' (an X archive file)")
    try:  # the prefix holds no newline, so JSON line numbers are file line numbers
        return json.loads(text[prefix.end():])
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: line {e.lineno}: invalid JSON: {e.msg}") from None


def read_x_archive(path: Path, replies: bool = False, links: str = "expand") -> list[dict]:
    tweets = []
    for where, text in archive_files(path):
        items = load_ytd(text, where)
        if not isinstance(items, list):
            raise BadInput(f"{where}: expected a JSON array of {{'tweet': ...}} items")
        for i, item in enumerate(items):
            tweet = item.get("tweet", item) if isinstance(item, dict) else None
            if not isinstance(tweet, dict):
                raise BadInput(f"{where}: item {i}: expected an object with a 'tweet' field")
            tweet.setdefault("full_text", tweet.get("text"))  # the oldest archives call it "text"
            for field in ("id_str", "full_text", "created_at"):
                if not isinstance(tweet.get(field), str):
                    raise BadInput(f"{where}: item {i}: missing or non-string field '{field}'")
            tweets.append((f"{where}: item {i}", tweet))
    if not tweets:
        raise BadInput(f"{path}: no data/tweets.js (or tweets-partN.js / tweet.js) found; {SUPPORTED}")
    ids = {t["id_str"] for _, t in tweets}
    # Whoever we reply to when answering a tweet of this archive is us: that finds our user id,
    # which catches self-replies to tweets that have since been deleted.
    me = {t.get("in_reply_to_user_id_str") for _, t in tweets if t.get("in_reply_to_status_id_str") in ids}
    me.discard(None)
    rows = []
    for where, t in tweets:
        text = t["full_text"]
        to_status, to_user = t.get("in_reply_to_status_id_str"), t.get("in_reply_to_user_id_str")
        # A reply to one of our own tweets is a thread: keep it. Replies to others lean on a
        # conversation the model never sees, so they are opt-in.
        if text.startswith("RT @"):
            skip = "retweet"
        elif (to_status or to_user) and to_status not in ids and to_user not in me and not replies:
            skip = "reply"
        else:
            skip = None
        clean = clean_x_text(text, t.get("entities", {}).get("urls", []), links, bool(to_status or to_user))
        rows.append(row(t["id_str"], clean, iso(parse_time(t["created_at"], f"{where}: field 'created_at'")),
                        likes=parse_count(t.get("favorite_count"), f"{where}: field 'favorite_count'"),
                        skip=skip))
    return rows


# --- CSV files (X analytics and generic) ------------------------------------------------------------

def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header and (line number, row) pairs; short or long rows are errors, not silent Nones."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader, [])]
            out = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue  # a blank line is not a row
                if len(values) != len(header):
                    raise BadInput(f"{path}: line {reader.line_num}: expected {len(header)} fields "
                                   f"(as in the header), got {len(values)}")
                out.append((reader.line_num, dict(zip(header, values))))
        except csv.Error as e:
            raise BadInput(f"{path}: line {reader.line_num}: malformed CSV: {e}") from None
    return header, out


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
    for line, r in rows:
        where = f"{path}: line {line}"
        post_id = r[col["id"]].strip()
        if not post_id.isdigit():
            raise BadInput(f"{where}: field '{col['id']}': not a post id: {post_id!r}")
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
        metrics = {k: parse_count(r[c], f"{where}: field '{c}'") if c else None
                   for k, c in col.items() if k in METRICS}
        out.append(row(post_id, clean_x_text(text, [], links, reply=text.startswith("@")),
                       iso(when), skip=skip, **metrics))
    return out


# --- Bluesky ----------------------------------------------------------------------------------------

def load_json_pages(path: Path) -> list[tuple[str, object]]:
    """A JSON document (object or array: 'item 3') or JSON Lines ('line 3'), as (where, value) pairs."""
    text = path.read_text(encoding="utf-8-sig")
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if path.suffix.lower() != ".jsonl":
        try:
            doc = json.loads(text)
            return [(f"item {i}", value) for i, value in enumerate(doc if isinstance(doc, list) else [doc])]
        except json.JSONDecodeError as e:
            if len(lines) < 2:  # not JSON Lines either
                raise BadInput(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    pages = []
    for n, ln in lines:
        try:
            pages.append((f"line {n}", json.loads(ln)))
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}: line {n}: invalid JSON: {e.msg}") from None
    return pages


def read_bluesky(path: Path, replies: bool = False) -> list[dict]:
    items = []  # (where, item, post)
    for where, page in load_json_pages(path):
        if not isinstance(page, dict) or not isinstance(page.get("feed"), list):
            raise BadInput(f"{path}: {where}: expected a getAuthorFeed page {{'feed': [...]}}")
        for i, item in enumerate(page["feed"]):
            post = item.get("post") if isinstance(item, dict) else None
            post = post if isinstance(post, dict) else {}
            record = post.get("record") if isinstance(post.get("record"), dict) else {}
            for name, value in (("post.uri", post.get("uri")), ("post.record.text", record.get("text")),
                                ("post.record.createdAt", record.get("createdAt"))):
                if not isinstance(value, str):
                    raise BadInput(f"{path}: {where}: feed[{i}]: missing or non-string field '{name}'")
            items.append((f"{path}: {where}: feed[{i}]", item, post))

    def author(post):  # at://did:plc:abc/app.bsky.feed.post/3k... -> did:plc:abc
        return (post.get("author") or {}).get("did") or post["uri"].split("/")[2]

    # The feed's owner: whoever wrote the posts that are not reposts.
    own = Counter(author(post) for _, item, post in items if not item.get("reason"))
    owner = own.most_common(1)[0][0] if own else None
    out = []
    for where, item, post in items:
        record = post["record"]
        parent = ((record.get("reply") or {}).get("parent") or {}).get("uri", "")
        if "repost" in str((item.get("reason") or {}).get("$type", "")).lower():
            skip = "repost"
        elif author(post) != owner:
            skip = "other_author"
        elif parent and not parent.startswith(f"at://{owner}/") and not replies:
            skip = "reply"  # a reply in our own thread (parent is ours) is kept
        else:
            skip = None
        out.append(row(post["uri"], record["text"].strip(),
                       iso(parse_time(record["createdAt"], f"{where}: field 'post.record.createdAt'")),
                       likes=parse_count(post.get("likeCount"), f"{where}: field 'post.likeCount'"),
                       comments=parse_count(post.get("replyCount"), f"{where}: field 'post.replyCount'"),
                       skip=skip))
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
    if path.suffix.lower() == ".csv":
        header, rows = read_csv_rows(path)
        column = {f: find_column(header, path, c) for f, c in mapping.items()}
        rows = [(f"line {n}", {f: r[column[f]] for f in mapping}) for n, r in rows]
    else:
        rows = load_json_pages(path)
        for where, value in rows:
            if not isinstance(value, dict):
                raise BadInput(f"{path}: {where}: expected a JSON object")
        for field, column in mapping.items():
            if not any(column in value for _, value in rows):
                raise BadInput(f"{path}: column '{column}' (for {field}) is in no line")
        rows = [(where, {f: value.get(c) for f, c in mapping.items()}) for where, value in rows]
    out = []
    for where, r in rows:
        where = f"{path}: {where}: field"
        text = "" if r["text"] is None else str(r["text"]).strip()
        # No id column: a hash of the text is stable across runs and re-orderings of the file.
        has_id = r.get("id") not in (None, "")
        post_id = str(r["id"]).strip() if has_id else "text-" + hashlib.sha1(text.encode()).hexdigest()[:16]
        when = r.get("created_at") and iso(parse_time(r["created_at"], f"{where} '{mapping['created_at']}'"))
        metrics = {m: parse_count(r.get(m), f"{where} '{mapping.get(m)}'") for m in METRICS}
        given = {k: str(r[k]).strip() for k in ("instruction", "topic", "style") if r.get(k)}
        for key, allowed in (("topic", topics.TOPICS), ("style", topics.STYLES)):
            if key in given and given[key] not in allowed:
                raise BadInput(f"{where} '{mapping[key]}': {given[key]!r} is not one of {', '.join(allowed)}")
        out.append({**row(post_id, text, when or None, **metrics), **given})
    return out


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
    first = next(csv.reader(io.StringIO(head)), [])
    columns = {c.strip().lower() for c in first}
    if {"post id", "post text"} <= columns or {"tweet id", "tweet text"} <= columns:
        return "x_analytics"
    if re.match(r'\s*[\[{]', head) and re.search(r'"feed"\s*:', head):
        return "bluesky"
    if mapping:
        return "generic"
    raise BadInput(f"{path}: unknown format; {SUPPORTED}")


def merge_into(kept: dict, new: dict) -> None:
    """Same post from two inputs. Text and time: the first input (archives go first) wins.
    Counts only grow, so the larger one is the fresher snapshot."""
    for key in ("text", "created_at", "instruction", "topic", "style"):
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
            "topic": topic, "style": style, "source": source, "created_at": post["created_at"]}


def import_posts(paths, replies=False, links="expand", source="own", mapping=None, log=print) -> list[dict]:
    """Read every input, keep what is training data, merge by id, return sorted records."""
    batches = []
    for p in map(Path, paths):
        fmt = detect_format(p, mapping)
        if fmt == "x_archive":
            rows = read_x_archive(p, replies, links)
        elif fmt == "x_analytics":
            rows = read_x_analytics(p, replies, links)
        elif fmt == "bluesky":
            rows = read_bluesky(p, replies)
        else:
            rows = read_generic(p, mapping)
        batches.append((p, fmt, rows))
    # The archive knows what each tweet replies to; a CSV only guesses from a leading "@".
    decided = {r["id"]: r["skip"] for _, fmt, rows in batches if fmt == "x_archive" for r in rows}
    merged, n_merged = {}, 0
    for p, fmt, rows in sorted(batches, key=lambda b: b[1] != "x_archive"):  # stable: archives first
        reasons = Counter()
        for r in rows:
            skip = decided.get(r["id"], r["skip"]) or (None if r["text"] else "empty")
            if skip:
                reasons[skip] += 1
            elif r["id"] in merged:
                merge_into(merged[r["id"]], r)
                n_merged += 1
            else:
                merged[r["id"]] = dict(r)
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
        log(f"{p} ({fmt}): {len(rows)} read, {len(rows) - sum(reasons.values())} kept, skipped: {skipped}")
    log(f"merged: {n_merged} rows joined a post with the same id from an earlier row -> {len(merged)} posts")
    records = [to_record(r, source) for r in merged.values()]
    return sorted(records, key=lambda r: (r["created_at"] or "", r["id"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minisft.importers", description=__doc__.split("\n\n")[0],
                                 epilog=SUPPORTED)
    ap.add_argument("paths", nargs="+", help="exports to read; the format of each is detected")
    ap.add_argument("--out", required=True, help="output JSONL in the shipped record schema")
    ap.add_argument("--replies", action="store_true",
                    help="also keep replies to other people (threads of your own are always kept)")
    ap.add_argument("--links", choices=("expand", "strip"), default="expand",
                    help="t.co links: expand to the real URL when the archive knows it, or strip them")
    ap.add_argument("--source", choices=("own", "viral", "diverse"), default="own",
                    help="value of the 'source' field of every record")
    ap.add_argument("--map", default=None,
                    help="column mapping for a generic CSV/JSONL, e.g. text=body,likes=favs,id=tweet_id")
    args = ap.parse_args(argv)
    try:
        mapping = parse_mapping(args.map) if args.map else None
        records = import_posts(args.paths, args.replies, args.links, args.source, mapping)
    except (BadInput, OSError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} records to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The exports the platforms let people download, read into rows (formats.py says what a row is).

  x_archive         the X account archive (.zip, unpacked folder, or its data/tweets.js)
  x_analytics       X analytics CSV, new ("Post id", ...) or legacy ("Tweet id", ...) header
  bluesky           app.bsky.feed.getAuthorFeed JSON (one page, a JSON array of pages, or JSONL)
Each decides which posts are not training data (retweets, replies to other people) and says why in `skip`.
"""

import html
import re
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from minisft.records import short_repr
from minisft.tweets.formats import (METRICS, BadInput, _obj, _str, decode, find_column, invalid, iso,
                                    load_json_document, load_json_pages, parse_count, parse_time, read_csv_rows, row)

SUPPORTED = ("supported formats: X account archive (folder, .zip or data/tweets.js), X analytics CSV "
             "('Post id' or legacy 'Tweet id' header), Bluesky getAuthorFeed JSON/JSONL, "
             "or any CSV/JSONL together with --map text=COLUMN,...")
MAX_MEMBER_BYTES = 1 << 30  # a zip member is read only up to 1 GiB uncompressed: a zip bomb can't fill memory
TCO = re.compile(r"[ \t]*https?://t\.co/\w+")        # t.co short links, with the space before them
LEADING_MENTIONS = re.compile(r"^(?:@\w+\s+)+")      # "@alice @bob " that X puts in front of replies
ARCHIVE_FILE = re.compile(r"^tweets?(?:-part\d+)?\.js$")  # tweets.js, tweets-part1.js, old tweet.js
YTD_PREFIX = re.compile(r"^\s*window\.YTD\.[\w.]+\s*=\s*")
TWITTER_EPOCH_MS = 1288834974657  # snowflake ids carry their creation time: (id >> 22) + epoch


# --- X: shared -------------------------------------------------------------------------------------

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


# --- X analytics CSV -------------------------------------------------------------------------------

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



"""What every export reader shares: the row it returns, values parsed the forgiving way, and the generic reader.

A row is {id, text, likes, comments, impressions, created_at, author, skip}: skip is None, the reason the row is
not training data (retweet, reply, ...), or "invalid" with the problem that keeps us from reading it (a bad count
or date, a line that is not JSON). A row problem never stops the reading; a file we can't read at all is a
BadInput naming the file and the line. JSON Lines and CSV are read through files.py, exactly as the training loader
reads them. The platforms' own exports are read in platforms.py; any other CSV/JSONL here, with a column map.
"""

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from minisft.files import DataError, csv_table, jsonl_rows
from minisft.records import MAX_COUNT, short_repr

METRICS = ("likes", "comments", "impressions")
MAP_FIELDS = ("id", "text", "created_at", *METRICS, "instruction", "topic", "style", "author")


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


# --- JSON documents and pages ---------------------------------------------------------------------

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
    digest = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]
    post_id = str(r["id"]).strip() if has_id else "text-" + digest
    when = r.get("created_at") and iso(parse_time(r["created_at"], f"{where} '{mapping['created_at']}'"))
    metrics = {m: parse_count(r.get(m), f"{where} '{mapping.get(m)}'") for m in METRICS}
    # Topic, style and author are taken as given: your own topics ("cooking") are as welcome as the built-in ones.
    given = {k: str(r[k]).strip() for k in ("instruction", "topic", "style") if r.get(k) not in (None, "")}
    author = str(r["author"]).strip() if r.get("author") not in (None, "") else None
    return {**row(post_id, text, when or None, author=author, **metrics), **given}



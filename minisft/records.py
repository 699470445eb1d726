"""Training records: read a file of instruction -> tweet rows, check every field, split, mix.

  load_records    read JSONL / CSV / Parquet, check every field of every row, drop exact duplicates
  split_records   train / validation by a hash of the response, so no tweet is on both sides
  mix_records     (optional) sample training records so the sources have the asked shares
A record is a plain dict: instruction, response (required text), id (text; derived from the content when the
file has none), likes, comments, impressions (counts or None), topic, style, source, author, created_at (text or
None). Any topic, style, source or author is fine: nothing here knows the synthetic set's 24 topics.
data.py turns records into training examples.

Nothing is lost without a count: every data row of the file is kept, rejected (with every reason it has, written
to a rejects file under --on-bad skip) or a duplicate, and read = kept + rejected + duplicates. A file that can't
be read at all (not Parquet, a CSV without a response column, no rows) is one DataError naming the file.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import math
import numbers
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from minisft.files import BadField, DataError, csv_table, jsonl_rows
from minisft.tokenizer import END_OF_TEXT

REQUIRED_FIELDS = ("instruction", "response")  # required, non-empty text
COUNT_FIELDS = ("likes", "comments", "impressions")  # non-negative integers, or None when the source lacks them
OPTIONAL_FIELDS = ("topic", "style", "source", "author", "created_at")  # strings, or None
MISSING = {"", "null", "none", "nan", "na"}  # how a CSV or a spreadsheet spells "no value" in a count column
# Limits that keep one absurd row from becoming a traceback or a memory blow-up. A count above MAX_COUNT is no
# real tweet's (and stays exact as a float: weights and medians compute in floats).
MAX_COUNT = 10**15
MAX_TEXT_CHARS = 100_000  # about csv's own field limit (131,072); the model's context is far shorter anyway
SHOWN_PROBLEMS = 5
ON_BAD_HINT = ("Fix them, or drop them with --on-bad skip: each is then written, with its reasons, to "
               "rejected_rows.jsonl in the run folder.")


class BadRow(Exception):
    """A row with one or more bad fields: every problem is named, not only the first."""

    def __init__(self, problems: list[BadField]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------------- checking a row

def _is_null(v) -> bool:
    # JSON null, a missing key, and the ways pandas spells an empty cell (NaN, NA, NaT)
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _text(name: str, v) -> str:
    if _is_null(v):
        raise BadField(name, "missing")
    if name == "id" and isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
        v = str(int(v))  # numeric ids are fine, kept as text
    if not isinstance(v, str):
        raise BadField(name, f"expected text, got {type(v).__name__} {short_repr(v)}")
    v = v.replace("\r\n", "\n").strip()  # a CRLF file's multi-line cell: the same text as from an LF file
    if not v:
        raise BadField(name, "empty")
    if len(v) > MAX_TEXT_CHARS:
        raise BadField(name, f"{len(v):,} characters, over the limit of {MAX_TEXT_CHARS:,}")
    if END_OF_TEXT in v:  # the tokenizer would read it as the special token: a stop in the middle of the text
        raise BadField(name, f"contains the end-of-text marker {END_OF_TEXT}")
    return v


def _count(name: str, v) -> int | None:
    if _is_null(v) or (isinstance(v, str) and v.strip().lower() in MISSING):
        return None  # the source lacks this metric: None, never an invented 0
    if isinstance(v, (bool, np.bool_)):
        raise BadField(name, f"expected a count, got a boolean {v!r}")
    original = v
    if isinstance(v, str):  # CSV cells are text: "12" and "12.0" are counts, "abc" is not
        try:
            v = decimal.Decimal(v.strip())  # exact: "12345678901234567890" is not rounded on the way
        except decimal.InvalidOperation:
            raise BadField(name, f"not a number: {short_repr(original)}") from None
    if isinstance(v, decimal.Decimal):  # from a CSV cell, or a Parquet decimal column
        if not v.is_finite() or v != v.to_integral_value():
            raise BadField(name, f"not a whole number: {short_repr(original)}")
        # int(Decimal("1e999999999")) would take forever: a value with 17 digits or more is just "too far".
        v = int(v) if v.adjusted() <= 16 else (-1 if v < 0 else MAX_COUNT + 1)
    if isinstance(v, numbers.Integral):
        n = int(v)
    elif isinstance(v, numbers.Real):
        if not math.isfinite(v) or not float(v).is_integer():
            raise BadField(name, f"not a whole number: {short_repr(v)}")
        n = int(v)
    else:
        raise BadField(name, f"expected a count, got {type(v).__name__} {short_repr(v)}")
    if n < 0:
        raise BadField(name, f"negative count: {short_repr(original)}")
    if n > MAX_COUNT:
        raise BadField(name, f"{short_repr(original)} is larger than any real count (limit {MAX_COUNT:.0e})")
    return n


def _optional(name: str, v) -> str | None:
    if _is_null(v):
        return None
    if name == "created_at" and hasattr(v, "isoformat"):  # Parquet stores timestamps as timestamps
        v = v.isoformat()
    if not isinstance(v, str):
        raise BadField(name, f"expected text, got {type(v).__name__} {short_repr(v)}")
    v = v.strip()
    if len(v) > MAX_TEXT_CHARS:
        raise BadField(name, f"{len(v):,} characters, over the limit of {MAX_TEXT_CHARS:,}")
    if name == "created_at" and v:
        try:
            datetime.fromisoformat(v)
        except ValueError:
            raise BadField(name, f"not an ISO 8601 date-time: {short_repr(v)}") from None
    return v or None


def short_repr(v, limit: int = 60) -> str:
    """repr(v), cut to `limit` characters: a message must stay one readable line whatever the row holds."""
    try:
        text = repr(v)
    except Exception:  # a value whose repr fails is still a value we can name
        text = f"<{type(v).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def derived_id(instruction: str, response: str) -> str:
    """The id of a row that has none: a hash of its content, so the same row gets the same id in every run,
    whatever the order of the file. Two rows with the same instruction and response are duplicates anyway."""
    return "row-" + hashlib.sha256(f"{instruction}\0{response}".encode()).hexdigest()[:16]


def validate_record(row: dict) -> dict:
    """A clean copy of one row (text stripped, counts as int or None), or BadRow naming EVERY bad field.

    `id` is optional: without one it is derived from the content (derived_id). Fields outside the schema are kept
    as they are.
    """
    record, problems = dict(row), []
    checks = [(name, _text) for name in REQUIRED_FIELDS] + [(name, _count) for name in COUNT_FIELDS]
    checks += [(name, _optional) for name in OPTIONAL_FIELDS]
    if not _is_null(row.get("id")):
        checks.append(("id", _text))
    for name, check in checks:
        try:
            record[name] = check(name, row.get(name))
        except BadField as bad:
            problems.append(bad)
    if problems:
        raise BadRow(problems)
    if _is_null(row.get("id")):
        record["id"] = derived_id(record["instruction"], record["response"])
    return record


# --------------------------------------------------------------------------------------------- reading files
# Each reader yields (line, raw, row): line is where the row starts in the file (1-based), raw is what to show in
# the rejects file, row is a dict, or a BadField when the line can't even be parsed. The line readers (files.py)
# never fail on one bad line: it becomes that row's BadField. Parquet has no lines: "line" is the row number.

def _jsonl_records(path: Path):
    for line, raw, row in jsonl_rows(path):
        if not isinstance(row, (dict, BadField)):
            row = BadField("(line)", f"expected a JSON object, got {type(row).__name__}")
        yield line, raw, row


def _csv_rows(path: Path):
    header, rows = csv_table(path)
    absent = [f for f in REQUIRED_FIELDS if f not in header]
    if header and absent:
        raise DataError(f"{path}:1: no {absent[0]!r} column (the header has: {', '.join(header) or 'nothing'})")
    for line, cells, problem in rows:
        if problem is not None:
            yield line, cells if cells is not None else f"<line {line}>", problem
        else:
            row = dict(zip(header, cells))
            yield line, row, row


def _parquet_rows(path: Path):
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow's errors are many (ArrowInvalid, OSError, ...): any of them means unreadable
        raise DataError(f"{path}: not a readable Parquet file: {type(e).__name__}: {str(e)[:200]}") from None
    absent = [f for f in REQUIRED_FIELDS if f not in frame.columns]
    if absent:
        raise DataError(f"{path}: no {absent[0]!r} column (the columns are: {', '.join(map(str, frame.columns))})")
    for number, row in enumerate(frame.to_dict("records"), start=1):
        yield number, row, row


READERS = {".jsonl": _jsonl_records, ".ndjson": _jsonl_records, ".csv": _csv_rows, ".parquet": _parquet_rows}


@dataclass
class LoadStats:
    read: int = 0  # data rows in the file
    kept: int = 0
    rejected: int = 0
    duplicates: int = 0  # same instruction and response as an earlier row: kept once
    derived_ids: int = 0  # kept rows that had no id: theirs is a hash of their content
    problems: list[str] = field(default_factory=list)  # the first few "file:line: field: reason", for the log

    def __post_init__(self):
        assert self.kept + self.rejected + self.duplicates == self.read, "rows lost while loading"


def load_records(path: str | Path, on_bad: str = "error",
                 rejects_path: str | Path | None = None) -> tuple[list[dict], LoadStats]:
    """Read and check every record of a JSONL, CSV or Parquet file (by extension).

    on_bad="error": any bad row raises DataError listing `file:line: field: reason` for the first 5 and the count.
    on_bad="skip": bad rows are dropped and written to rejects_path (JSONL of line, problems, raw), if given.
    Either way kept + rejected + duplicates == read: nothing is lost without a count. Two different rows with the
    same id (given, or derived) are a reject of the later one: an id must name one row.
    """
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}: use {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    records, rejects, seen, ids, read, duplicates, derived = [], [], set(), {}, 0, 0, 0
    for line, raw, row in reader(path):
        read += 1
        try:
            if isinstance(row, BadField):
                raise BadRow([row])
            record = validate_record(row)
            key = (record["instruction"], record["response"])
            if key in seen:
                duplicates += 1
                continue
            if record["id"] in ids:
                raise BadRow([BadField("id", f"{record['id']!r} is also the id of line {ids[record['id']]}, a "
                                              "different row")])
        except BadRow as bad:
            rejects.append({"line": line, "problems": [{"field": p.field, "reason": p.reason} for p in bad.problems],
                            "raw": raw})
            continue
        seen.add(key)
        ids[record["id"]] = line
        records.append(record)
        derived += _is_null(row.get("id"))
    if read == 0:
        only = "is empty" if path.stat().st_size == 0 else "holds no data row"
        raise DataError(f"{path}: no data rows: the file {only}")
    problems = [f"{path}:{r['line']}: " + "; ".join(f"{p['field']}: {p['reason']}" for p in r["problems"])
                for r in rejects[:SHOWN_PROBLEMS]]
    stats = LoadStats(read, len(records), len(rejects), duplicates, derived, problems)
    if rejects and on_bad == "error":
        raise DataError(f"{path}: {len(rejects)} of {read} rows are invalid (first {len(problems)} shown):\n  "
                        + "\n  ".join(problems) + "\n" + ON_BAD_HINT)
    if rejects_path is not None:
        Path(rejects_path).parent.mkdir(parents=True, exist_ok=True)
        with open(rejects_path, "w") as f:
            for r in rejects:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return records, stats


# ------------------------------------------------------------------------------------ train / val, and the mix

def _unit_hash(text: str, seed: int) -> float:
    # hashlib, not hash(): Python salts hash() of strings per process, so the split would change every run.
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)


def split_records(records: list[dict], val_fraction: float = 0.05, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, val), each in file order. A record goes to val when the hash of its normalised response
    (lowercase, whitespace collapsed) is below val_fraction: the same tweet under two instructions can never be
    learned in training and then "predicted" in validation. Deterministic: same records and seed, same split."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    u = [_unit_hash(" ".join(r["response"].lower().split()), seed) for r in records]
    in_val = [x < val_fraction for x in u]
    if val_fraction > 0 and not any(in_val) and len(set(u)) > 1:
        in_val = [x == min(u) for x in u]  # a tiny data set still gets one validation response
    return [r for r, v in zip(records, in_val) if not v], [r for r, v in zip(records, in_val) if v]


def parse_mix(spec: str) -> dict[str, float]:
    """"own=0.5,viral=0.3,diverse=0.2" -> {"own": 0.5, ...}; shares >= 0 that sum to 1."""
    shares = {}
    for part in spec.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        try:
            share = float(value) if eq and name else float("nan")
        except ValueError:
            share = float("nan")
        if not share >= 0 or name in shares:
            raise ValueError(f"mix {spec!r}: bad entry {part.strip()!r}: expected source=share, each source once")
        shares[name] = share
    if abs(sum(shares.values()) - 1) > 1e-6:
        raise ValueError(f"mix {spec!r}: shares sum to {sum(shares.values()):g}, not 1")
    return shares


def mix_records(records: list[dict], spec: str, seed: int = 0) -> list[dict]:
    """Sample records (without repeats) so each source has its share of the result, using as many records as
    the scarcest source allows. Sources not named in spec are left out. Returned in the input order."""
    shares = parse_mix(spec)
    by_source = defaultdict(list)
    for i, r in enumerate(records):
        by_source[r.get("source")].append(i)
    unknown = [s for s in shares if s not in by_source]
    if unknown:
        have = sorted(s for s in by_source if s is not None)
        raise ValueError(f"mix {spec!r}: no training records from source(s) {unknown}; the sources are {have}")
    wanted = {s: p for s, p in sorted(shares.items()) if p > 0}
    total = min(len(by_source[s]) / p for s, p in wanted.items())  # the scarcest source, relative to its share
    rng = random.Random(f"mix:{seed}")
    chosen = []
    for s, p in wanted.items():
        chosen += rng.sample(by_source[s], min(len(by_source[s]), round(total * p)))
    return [records[i] for i in sorted(chosen)]

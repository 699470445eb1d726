"""Training records: read a file of instruction -> tweet rows, check every field, split, mix.

  load_records    read JSONL / CSV / Parquet, check every field of every row, drop exact duplicates
  split_records   train / validation by a hash of the response, so no tweet is on both sides
  mix_records     (optional) sample training records so the sources have the asked shares
A record is a plain dict: id, instruction, response (required text), likes, comments, impressions (counts or
None), topic, style, source, created_at (text or None). data.py turns records into training examples.
"""

from __future__ import annotations

import csv
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

from minisft.tokenizer import END_OF_TEXT

TEXT_FIELDS = ("id", "instruction", "response")  # required, non-empty
COUNT_FIELDS = ("likes", "comments", "impressions")  # non-negative integers, or None when the source lacks them
OPTIONAL_FIELDS = ("topic", "style", "source", "created_at")  # strings, or None
MISSING = {"", "null", "none", "nan", "na"}  # how a CSV or a spreadsheet spells "no value" in a count column
SHOWN_PROBLEMS = 5


class DataError(ValueError):
    """Bad training data: the message names the file, the line and the field."""


class BadField(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


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
        raise BadField(name, f"expected text, got {type(v).__name__} {v!r}")
    v = v.strip()
    if not v:
        raise BadField(name, "empty")
    if END_OF_TEXT in v:  # the tokenizer would read it as the special token: a stop in the middle of the text
        raise BadField(name, f"contains the end-of-text marker {END_OF_TEXT}")
    return v


def _count(name: str, v) -> int | None:
    if _is_null(v) or (isinstance(v, str) and v.strip().lower() in MISSING):
        return None  # the source lacks this metric: None, never an invented 0
    if isinstance(v, (bool, np.bool_)):
        raise BadField(name, f"expected a count, got a boolean {v!r}")
    if isinstance(v, str):  # CSV cells are text: "12" and "12.0" are counts, "abc" is not
        try:
            v = float(v.strip())
        except ValueError:
            raise BadField(name, f"not a number: {v!r}") from None
    if isinstance(v, numbers.Integral):
        n = int(v)
    elif isinstance(v, numbers.Real):
        if not math.isfinite(v) or not float(v).is_integer():
            raise BadField(name, f"not a whole number: {v!r}")
        n = int(v)
    else:
        raise BadField(name, f"expected a count, got {type(v).__name__} {v!r}")
    if n < 0:
        raise BadField(name, f"negative count: {n}")
    return n


def _optional(name: str, v) -> str | None:
    if _is_null(v):
        return None
    if name == "created_at" and hasattr(v, "isoformat"):  # Parquet stores timestamps as timestamps
        v = v.isoformat()
    if not isinstance(v, str):
        raise BadField(name, f"expected text, got {type(v).__name__} {v!r}")
    v = v.strip()
    if name == "created_at" and v:
        try:
            datetime.fromisoformat(v)
        except ValueError:
            raise BadField(name, f"not an ISO 8601 date-time: {v!r}") from None
    return v or None


def validate_record(row: dict) -> dict:
    """A clean copy of one row (text stripped, counts as int or None), or BadField naming the first bad field.

    Fields outside the schema are kept as they are.
    """
    record = dict(row)
    for name in TEXT_FIELDS:
        record[name] = _text(name, row.get(name))
    for name in COUNT_FIELDS:
        record[name] = _count(name, row.get(name))
    for name in OPTIONAL_FIELDS:
        record[name] = _optional(name, row.get(name))
    return record


# --------------------------------------------------------------------------------------------- reading files
# Each reader yields (line, raw, row): line is where the row starts in the file (1-based), raw is what to show in
# the rejects file, row is a dict, or a BadField when the line can't even be parsed. JSONL and CSV are parsed with
# the standard library, line by line, so that every problem gets its exact file line (pandas reports neither the
# line of a bad row nor survives one malformed JSON line). Parquet has no lines: "line" is the 1-based row number.

def _jsonl_rows(path: Path):
    with open(path, "rb") as f:
        for line, data in enumerate(f, start=1):
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                yield line, data.decode("utf-8", "replace").rstrip("\n"), BadField("(line)", f"not UTF-8: {e}")
                continue
            if not text.strip():
                continue  # blank lines are not records
            raw = text.rstrip("\r\n")
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                row = BadField("(line)", f"invalid JSON: {e.msg} at column {e.colno}")
            if not isinstance(row, (dict, BadField)):
                row = BadField("(line)", f"expected a JSON object, got {type(row).__name__}")
            yield line, raw, row


def _csv_rows(path: Path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        end = reader.line_num  # a quoted cell may span lines: line_num is the file line the reader has reached
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not cells:
                continue
            if len(cells) != len(header):
                problem = f"expected {len(header)} cells, like the header; found {len(cells)}"
                yield start, cells, BadField("(row)", problem)
            else:
                row = dict(zip(header, cells))
                yield start, row, row


def _parquet_rows(path: Path):
    for number, row in enumerate(pd.read_parquet(path).to_dict("records"), start=1):
        yield number, row, row


READERS = {".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}


@dataclass
class LoadStats:
    read: int = 0  # data rows in the file
    kept: int = 0
    rejected: int = 0
    duplicates: int = 0  # same instruction and response as an earlier row: kept once
    problems: list[str] = field(default_factory=list)  # the first few "file:line: field: reason", for the log

    def __post_init__(self):
        assert self.kept + self.rejected + self.duplicates == self.read, "rows lost while loading"


def load_records(path: str | Path, on_bad: str = "error",
                 rejects_path: str | Path | None = None) -> tuple[list[dict], LoadStats]:
    """Read and check every record of a JSONL, CSV or Parquet file (by extension).

    on_bad="error": any bad row raises DataError listing `file:line: field: reason` for the first 5 and the count.
    on_bad="skip": bad rows are dropped and written to rejects_path (JSONL of line, field, reason, raw), if given.
    Either way kept + rejected + duplicates == read: nothing is lost without a count.
    """
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}: use {', '.join(READERS)}")
    records, rejects, seen, read, duplicates = [], [], set(), 0, 0
    for line, raw, row in reader(path):
        read += 1
        try:
            if isinstance(row, BadField):
                raise row
            record = validate_record(row)
        except BadField as bad:
            rejects.append({"line": line, "field": bad.field, "reason": bad.reason, "raw": raw})
            continue
        key = (record["instruction"], record["response"])
        if key in seen:
            duplicates += 1
        else:
            seen.add(key)
            records.append(record)
    problems = [f"{path}:{r['line']}: {r['field']}: {r['reason']}" for r in rejects[:SHOWN_PROBLEMS]]
    stats = LoadStats(read, len(records), len(rejects), duplicates, problems)
    if rejects and on_bad == "error":
        raise DataError(f"{path}: {len(rejects)} of {read} rows are invalid (first {len(problems)} shown):\n  "
                        + "\n  ".join(problems)
                        + "\nFix them, or drop them with on_bad='skip' (--on-bad skip): "
                        "they are then listed in a rejects file.")
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

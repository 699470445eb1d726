"""Reading data files without ever crashing on one bad line, and writing files so a crash never leaves half of one.

Reading: JSON Lines and CSV are read as bytes and split on b"\\n" only, so U+2028 inside a JSON string is not a line
break and CRLF ends are fine; each line is decoded and parsed on its own. A line that is not UTF-8, not JSON, too
long or too deeply nested becomes a BadField for that line, with its exact line number, and reading goes on: the
training loader (records.py) and the importers count it as a rejected row instead of dying with a traceback.
Writing: `atomic_write` writes a temporary file in the same folder and renames it over the real name.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

MAX_LINE_BYTES = 1 << 20  # a JSONL line over 1 MiB is rejected without being parsed


class DataError(ValueError):
    """A data file that can't be used: the message names the file and, where there is one, the line and field."""


class BadField(Exception):
    """A problem with one field of one row, or with the whole line ("(line)", "(row)")."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def file_lines(path: Path):
    """(line number, bytes of that line incl. its end), or (n, None) for a line over MAX_LINE_BYTES (skipped
    unread). Lines end at b"\n" only. The importers read JSON Lines through this too."""
    with open(path, "rb") as f:
        n = 0
        while data := f.readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
                while data and not data.endswith(b"\n"):  # skip the rest of the long line, 1 MiB at a time
                    data = f.readline(MAX_LINE_BYTES)
                yield n, None
            else:
                yield n, data


def decode_line(n: int, data: bytes) -> str:
    """One line as text (a UTF-8 byte-order mark on line 1 dropped); UnicodeDecodeError when it is not UTF-8."""
    return data.decode("utf-8-sig" if n == 1 else "utf-8")


def not_utf8(e: UnicodeDecodeError) -> BadField:
    return BadField("(line)", f"not UTF-8: byte {e.object[e.start]:#04x} at column {e.start + 1}")


def parse_json_line(text: str):
    """One JSON Lines line -> its value, or a BadField saying why it isn't one."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        return BadField("(line)", f"invalid JSON: {e.msg} at column {e.colno}")
    except RecursionError:
        return BadField("(line)", "invalid JSON: nested too deeply")
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        return BadField("(line)", f"invalid JSON: {e}")


def jsonl_rows(path: Path):
    """(line, raw text, value or BadField) for every non-blank line of a JSON Lines file."""
    for line, data in file_lines(path):
        if data is None:
            yield line, f"<line over {MAX_LINE_BYTES:,} bytes>", BadField("(line)", f"over {MAX_LINE_BYTES:,} bytes")
            continue
        try:
            text = decode_line(line, data)
        except UnicodeDecodeError as e:
            yield line, data.decode("utf-8", "replace").rstrip("\r\n"), not_utf8(e)
            continue
        if text.strip():  # blank lines are not records
            yield line, text.rstrip("\r\n"), parse_json_line(text)


class CsvLines:
    """The file's lines decoded one at a time, for csv.reader; remembers which lines were not UTF-8 or too long."""

    def __init__(self, path: Path):
        self.lines, self.bad = file_lines(path), {}  # bad: line number -> BadField

    def __iter__(self):
        for n, data in self.lines:
            if data is None:
                self.bad[n] = BadField("(line)", f"over {MAX_LINE_BYTES:,} bytes")
                yield "\n"
                continue
            try:
                yield decode_line(n, data)
            except UnicodeDecodeError as e:
                self.bad[n] = not_utf8(e)
                yield data.decode("utf-8", "replace")


def csv_table(path: Path) -> tuple[list[str], object]:
    """(header, rows): rows yields (first file line, cells, None), or (first line, cells or None, BadField) for
    a bad row, for each data row of the file.

    A row that is not UTF-8, has a field over csv's size limit or another CSV fault is a BadField for that row
    only; the reader goes on. Blank rows are skipped. The importers read their CSVs through this too.
    """
    lines = CsvLines(path)
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as e:
        raise DataError(f"{path}:1: the header is not valid CSV: {e}") from None
    if 1 in lines.bad:
        raise DataError(f"{path}:1: the header: {lines.bad[1].reason}")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{path}:1: column {repeated[0]!r} appears more than once in the header")

    def rows():
        end = reader.line_num  # a quoted cell may span lines: line_num is the file line the reader has reached
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # e.g. a field over csv's size limit: this row is bad, the reader goes on
                start, end = end + 1, reader.line_num
                yield start, None, lines.bad.get(start, BadField("(row)", f"malformed CSV: {e}"))
                continue
            start, end = end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue  # a blank line is not a row
            broken = next((lines.bad[n] for n in range(start, end + 1) if n in lines.bad), None)
            if broken is None and len(cells) != len(header):
                broken = BadField("(row)", f"expected {len(header)} cells, like the header; found {len(cells)}")
            yield start, cells, broken
    return header, rows()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) to make the file under a temporary name in the same folder (the same filesystem, so the
    rename is atomic), flush it to disk, then rename it over `path`: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

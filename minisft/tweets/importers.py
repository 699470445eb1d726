"""Turn exports of real posts into SFT records (instruction -> tweet, with engagement metadata).

    python -m minisft.tweets.importers twitter-archive.zip account_analytics_content.csv --out data/own.jsonl

Scrapers stopped working in 2023, so we read what people can download themselves (formats.py: the X archive, X
analytics CSVs, a Bluesky feed, any CSV/JSONL with a column map). Each reader returns rows; this module decides
what is kept, merges rows that share an id, and counts every row: read = kept + skipped for each input, so nothing
disappears without showing up in the summary. A metric a source lacks is None, never 0: a model conditioned on
"0 likes" would learn that the post flopped, which we do not know.
"""

import argparse
import csv
import io
import json
import random
import re
import sys
import zipfile
from collections import Counter
from pathlib import Path

from minisft.tweets import topics
from minisft.tweets.formats import METRICS, BadInput, parse_mapping, read_generic
from minisft.tweets.platforms import SUPPORTED, YTD_PREFIX, read_bluesky, read_x_analytics, read_x_archive

SHOWN_PROBLEMS = 5


# --- Detection --------------------------------------------------------------------------------------

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



def read_input(p: Path, replies: bool, links: str, mapping: dict | None) -> tuple[str, list[dict]]:
    fmt = detect_format(p, mapping)
    if fmt == "x_archive":
        return fmt, read_x_archive(p, replies, links)
    if fmt == "x_analytics":
        return fmt, read_x_analytics(p, replies, links)
    if fmt == "bluesky":
        return fmt, read_bluesky(p, replies)
    return fmt, read_generic(p, mapping)
# --- Merging and records ----------------------------------------------------------------------------

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
    ap = argparse.ArgumentParser(prog="python -m minisft.tweets.importers", description=__doc__.split("\n\n")[0],
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

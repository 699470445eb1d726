"""A synthetic, seeded set of instruction -> tweet pairs with engagement, and its engagement oracle.

The shipped data/tweets.jsonl is SYNTHETIC: no real account wrote these tweets, and the likes are
drawn from the model below, not observed. It exists so the whole SFT pipeline (weighting by engagement,
evaluation of "would this tweet do well?") can be built and tested offline and reproducibly:

    python -m minisft.tweets.datagen --n 10000 --seed 0 --out data/tweets.jsonl   # byte-identical every time

How a record is made: pick a source, topic and style; assemble the text from parts (parts.json, next
to this file) in that source's voice; ask topics.instruction_for() for the instruction; then sample
engagement.

Sources (each has its own voice and audience; AUDIENCE below is its baseline of likes):
    own      one personal account (the baseline style): mostly its own 14 topics, lowercase, casual,
             chatty lead-ins, few emoji, rare hashtags; baseline 25 likes
    viral    big tech accounts: hook first lines, one sentence per line, numbers, 1-3 emoji; baseline 600
    diverse  many mid-sized accounts on every topic: neutral sentence case, more hashtags; baseline 80

The engagement model. expected_engagement() multiplies an audience baseline by one lift per
documented text property; it is deterministic and reads only the text (+ topic, style, source):

    expected likes = AUDIENCE[source] * STYLE_LIFT[style] * TOPIC_LIFT[topic]
                     * 1.40  if the text opens with a hook (a short first line, <= 60 chars, on its own line)
                     * 0.90  if it asks a question (contains "?"; questions trade likes for replies)
                     * 1.15  if it contains a number (outside hashtags)
                     * (1 + 0.08 per extra line, up to 4)              short lines are easier to read
                     * (1 + 0.10 per emoji, up to 2) * 0.90 per emoji beyond 3
                     * 0.85 per hashtag beyond 2                        hashtag spam looks like spam
                     * length curve 0.7 + 0.4 * exp(-((chars - 150) / 100)^2)   best near 150 characters
    STYLE_LIFT runs from humor 1.5 and hot_take 1.4 down to question 0.8; TOPIC_LIFT from llms 1.5 and
    career 1.35 down to data_engineering 0.8 (the tables are right below the imports).

The sampled metrics of a record are what a real account would see around that expectation:
    likes       = expected * lognormal noise (mean 1, sigma 0.8)
                  * a rare viral boost (2% of tweets, x5..x25), divided by the boost's mean,
                  so E[likes] = expected likes: heavy-tailed like real accounts
    comments    = likes * comment_rate(text, style) * lognormal noise (mean 1, sigma 0.5);
                  the rate is 5% times a style factor (question x3, hot take x2) x1.5 if it asks "?"
    impressions = (likes + 1) / like-rate, where the like-rate is 3% (own), 1.2% (viral), 2% (diverse)
                  times lognormal noise; never below likes
"""

import argparse
import json
import math
import random
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from minisft.tweets.topics import STYLES, TOPICS, guess_style, guess_topic, instruction_for, topic_mentioned

# The parts tweets are assembled from: content, not code, so it lives in parts.json. A tweet = a style template
# (how it is said) + topic parts poured into its slots (what it is about) + a source voice (who says it: hook,
# emoji, closer, hashtags, casing). Every topic fills the same roles, so any template reads as plain English:
#   name      noun for "{name} tip:", "{k} {name} mistakes"      craft  "{years} years of {craft}"
#   tools     things people use or compare                       pairs  [bad habit, better habit]
#   pains     noun phrases that can ruin a day                   facts  TIL-worthy facts (true ones)
#   claims    opinions for hot takes                             questions  open questions
#   habits    gerunds to laugh about                             wins   past-tense results, may hold {numbers}
#   tags      hashtags; the first one is a keyword of the topic, so it can be appended to any tweet
PARTS = json.loads((Path(__file__).with_name("parts.json")).read_text(encoding="utf-8"))

SOURCES = ("own", "viral", "diverse")
SOURCE_SHARE = {"own": 0.3, "viral": 0.3, "diverse": 0.4}
# The personal account writes about what one person works on; the others cover every topic.
OWN_TOPICS = ("python", "machine_learning", "llms", "git", "linux", "testing", "dev_life", "career",
              "productivity", "databases", "apis", "performance", "open_source", "data_engineering")
VIRAL_FAVOURITES = ("llms", "career", "startups", "dev_life", "javascript", "python", "productivity")
STYLE_WEIGHTS = {
    "own": {"humor": 1.0, "hot_take": 0.8, "tip": 1.2, "question": 1.0, "story": 1.5, "thread_hook": 0.6,
            "til": 1.5},
    "viral": {"humor": 1.3, "hot_take": 1.5, "tip": 1.2, "question": 0.8, "story": 0.8, "thread_hook": 1.6,
              "til": 0.7},
    "diverse": {"humor": 0.8, "hot_take": 0.8, "tip": 1.4, "question": 1.3, "story": 1.0, "thread_hook": 0.8,
                "til": 1.3},
}

# ---- the engagement model (see the module docstring) ----
AUDIENCE = {"own": 25.0, "viral": 600.0, "diverse": 80.0}
STYLE_LIFT = {"humor": 1.5, "hot_take": 1.4, "thread_hook": 1.3, "tip": 1.25, "story": 1.1, "til": 1.0,
              "question": 0.8}
TOPIC_LIFT = {"llms": 1.5, "career": 1.35, "dev_life": 1.3, "startups": 1.25, "python": 1.2,
              "machine_learning": 1.2, "javascript": 1.15, "productivity": 1.15, "security": 1.1, "rust": 1.1,
              "frontend": 1.1, "git": 1.0, "linux": 1.0, "open_source": 1.0, "system_design": 1.0,
              "golang": 0.95, "devops": 0.95, "cloud": 0.95, "databases": 0.95, "apis": 0.9, "performance": 0.9,
              "mobile": 0.9, "testing": 0.85, "data_engineering": 0.8}
HOOK_LIFT, QUESTION_LIFT, NUMBER_LIFT = 1.40, 0.90, 1.15
COMMENT_BASE = 0.05
COMMENT_STYLE = {"question": 3.0, "hot_take": 2.0, "thread_hook": 1.2, "story": 1.0, "humor": 0.7, "til": 0.7,
                 "tip": 0.6}
LIKE_RATE = {"own": 0.03, "viral": 0.012, "diverse": 0.02}
LIKES_SIGMA, COMMENTS_SIGMA, IMPRESSIONS_SIGMA = 0.8, 0.5, 0.3
VIRAL_P, VIRAL_LOW, VIRAL_HIGH = 0.02, 5.0, 25.0
VIRAL_MEAN = 1 - VIRAL_P + VIRAL_P * (VIRAL_LOW + VIRAL_HIGH) / 2


def count_emoji(text: str) -> int:
    # Pictographs live above U+1F000; the older symbols (✅ ⚡ ♻) in U+2600..U+27BF.
    return sum(1 for ch in text if ord(ch) >= 0x1F000 or 0x2600 <= ord(ch) <= 0x27BF)


def text_features(text: str) -> dict:
    """The text properties the oracle reads, exposed so tests and learners can inspect them."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    no_tags = re.sub(r"#\w+", "", text)
    return {
        "chars": len(text),
        "lines": len(lines),
        "hook": len(lines) >= 2 and len(lines[0]) <= 60 and text.lstrip().startswith(lines[0] + "\n"),
        "question": "?" in text,
        "number": bool(re.search(r"\d", no_tags)),
        "emoji": count_emoji(text),
        "hashtags": len(re.findall(r"(?<!\w)#\w+", text)),
    }


def _check(topic, style, source):
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; expected one of {sorted(TOPICS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {list(STYLES)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {list(SOURCES)}")


def expected_engagement(text: str, topic: str | None = None, style: str | None = None,
                        source: str = "own", author: str | None = None) -> float:
    """Expected likes of a tweet under the synthetic engagement model (no noise; None -> guessed)."""
    topic = guess_topic(text) if topic is None else topic
    style = guess_style(text) if style is None else style
    _check(topic, style, source)
    f = text_features(text)
    lift = STYLE_LIFT[style] * TOPIC_LIFT[topic]
    lift *= HOOK_LIFT if f["hook"] else 1.0
    lift *= QUESTION_LIFT if f["question"] else 1.0
    lift *= NUMBER_LIFT if f["number"] else 1.0
    lift *= 1 + 0.08 * min(max(f["lines"] - 1, 0), 4)
    lift *= (1 + 0.10 * min(f["emoji"], 2)) * 0.90 ** max(f["emoji"] - 3, 0)
    lift *= 0.85 ** max(f["hashtags"] - 2, 0)
    lift *= 0.7 + 0.4 * math.exp(-(((f["chars"] - 150) / 100) ** 2))
    return AUDIENCE[source] * lift


def comment_rate(text: str, style: str | None = None) -> float:
    """Expected comments per like: questions and hot takes invite replies."""
    style = guess_style(text) if style is None else style
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {list(STYLES)}")
    return COMMENT_BASE * COMMENT_STYLE[style] * (1.5 if "?" in text else 1.0)


def _lognormal(rng: random.Random, sigma: float) -> float:
    return math.exp(rng.gauss(-sigma * sigma / 2, sigma))  # mean exactly 1


def sample_engagement(text, topic, style, source, rng: random.Random) -> tuple[int, int, int]:
    """(likes, comments, impressions) drawn around the oracle; see the module docstring."""
    boost = rng.uniform(VIRAL_LOW, VIRAL_HIGH) if rng.random() < VIRAL_P else 1.0
    expected = expected_engagement(text, topic, style, source)
    likes = round(expected * _lognormal(rng, LIKES_SIGMA) * boost / VIRAL_MEAN)
    comments = round(likes * comment_rate(text, style) * _lognormal(rng, COMMENTS_SIGMA))
    impressions = max(likes, round((likes + 1) / (LIKE_RATE[source] * _lognormal(rng, IMPRESSIONS_SIGMA))))
    return likes, comments, impressions


# ---- composing the text ----
def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s[:1].islower() else s


def _fill(template: str, topic: str, year: int, rng: random.Random) -> str:
    p = PARTS["topics"][topic]
    nums = dict(years=rng.randint(2, p["max_years"]), hours=rng.randint(2, 40), k=rng.randint(3, 12),
                pct=rng.randrange(15, 95, 5), mins=rng.randint(8, 55), secs=rng.randint(3, 40),
                small=rng.randint(2, 9), day=rng.choice(PARTS["weekdays"]), year=rng.randint(2012, year - 2), yr=year)
    bad, good = rng.choice(p["pairs"])
    tool, tool2 = rng.sample(p["tools"], 2)
    pain, pain2 = rng.sample(p["pains"], 2)
    slots = dict(nums, name=p["name"], craft=p["craft"], tool=tool, tool2=tool2, bad=bad, good=good, pain=pain,
                 pain2=pain2, habit=rng.choice(p["habits"]), when=rng.choice(PARTS["whens"]),
                 fact=rng.choice(p["facts"]), claim=rng.choice(p["claims"]).format(**nums),
                 q=rng.choice(p["questions"]).format(**nums), win=rng.choice(p["wins"]).format(**nums))
    for key in ("bad", "good", "pain", "claim", "fact", "q", "when"):
        slots[key[0].upper() + key[1:]] = _cap(slots[key])
    return template.format(**slots)


def _add_emoji(text: str, style: str, count: int, rng: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(count):
        i = rng.choice([j for j, ln in enumerate(lines) if ln.strip()])
        lines[i] += " " + rng.choice(PARTS["style_emoji"][style])
    return "\n".join(lines)


def _hashtags(topic: str, rng: random.Random) -> str:
    tags = [rng.choice(PARTS["topics"][topic]["tags"])]
    if rng.random() < 0.5:
        tags.append(rng.choice(PARTS["general_tags"]))
    return " ".join(tags)


def _voice(body: str, topic: str, style: str, source: str, rng: random.Random) -> str:
    """Dress the body in the source's voice: hook, line breaks, emoji, closer, hashtags, casing."""
    if source == "viral":
        if style != "thread_hook" and rng.random() < 0.5:
            hook = rng.choice(PARTS["hooks"]).format(years=rng.randint(2, 12), pct=rng.randrange(60, 95, 5))
            body = hook + "\n\n" + body
        if rng.random() < 0.5:
            body = re.sub(r"\. (?=[A-Z])", ".\n\n", body)  # one sentence per line
        body = _add_emoji(body, style, rng.choice((1, 1, 2, 2, 3)), rng)
        if rng.random() < 0.45:
            body += "\n\n" + rng.choice(PARTS["closers"]["viral"])
        if rng.random() < 0.3:
            body += "\n\n" + _hashtags(topic, rng)
        return body
    if rng.random() < (0.35 if source == "own" else 0.2 if style in ("tip", "til", "story") else 0.0):
        body = rng.choice(PARTS["lead_ins"][source]) + body
    if rng.random() < (0.4 if source == "own" else 0.5):
        body = re.sub(r"\s*\n+\s*", " ", body)  # everything on one line
    if rng.random() < 0.25:
        body = _add_emoji(body, style, 1, rng)
    if rng.random() < 0.3:
        body += rng.choice((" ", "\n")) + rng.choice(PARTS["closers"][source])
    if rng.random() < (0.08 if source == "own" else 0.6):
        body += rng.choice((" ", "\n\n")) + _hashtags(topic, rng)
    return body.lower() if source == "own" else body


def compose_tweet(topic: str, style: str, source: str, year: int, rng: random.Random) -> str:
    """One tweet of this topic, style and voice, at most 280 characters, that mentions its topic."""
    _check(topic, style, source)
    for _ in range(50):
        text = _voice(_fill(rng.choice(PARTS["style_templates"][style]), topic, year, rng),
                      topic, style, source, rng)
        if guess_topic(text) != topic or not topic_mentioned(text, topic):  # "Go" is no keyword: tag it
            tag = PARTS["topics"][topic]["tags"][0]
            text += " " + (tag.lower() if source == "own" else tag)
        if len(text) <= 280:
            return text
    raise RuntimeError(f"could not fit a {topic}/{style} tweet in 280 characters")


# ---- records ----
START = datetime(2023, 1, 1, tzinfo=timezone.utc)
DAYS = (datetime(2026, 1, 1, tzinfo=timezone.utc) - START).days
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 3, 3, 2, 1]  # people tweet by day


def _pick_topic(source: str, rng: random.Random) -> str:
    if source == "own":  # mostly its own subjects, sometimes anything
        return rng.choice(OWN_TOPICS) if rng.random() < 0.7 else rng.choice(list(TOPICS))
    if source == "viral":
        topics = list(TOPICS)
        return rng.choices(topics, weights=[2 if t in VIRAL_FAVOURITES else 1 for t in topics])[0]
    return rng.choice(list(TOPICS))


def _record(rng: random.Random) -> dict:
    source = rng.choices(SOURCES, weights=[SOURCE_SHARE[s] for s in SOURCES])[0]
    topic = _pick_topic(source, rng)
    style = rng.choices(STYLES, weights=[STYLE_WEIGHTS[source][s] for s in STYLES])[0]
    when = START + timedelta(days=rng.randrange(DAYS), hours=rng.choices(range(24), weights=HOUR_WEIGHTS)[0],
                             minutes=rng.randrange(60))
    text = compose_tweet(topic, style, source, when.year, rng)
    likes, comments, impressions = sample_engagement(text, topic, style, source, rng)
    return {"id": "", "instruction": instruction_for(topic, style, rng), "response": text, "likes": likes,
            "comments": comments, "impressions": impressions, "topic": topic, "style": style, "source": source,
            "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def generate_records(n: int, seed: int) -> list[dict]:
    """n records, sorted by created_at, ids syn-000001...; the same (n, seed) gives the same records."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = random.Random(seed)
    records = sorted((_record(rng) for _ in range(n)), key=lambda r: r["created_at"])  # stable sort
    for i, r in enumerate(records, start=1):
        r["id"] = f"syn-{i:06d}"
    return records


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write the synthetic instruction -> tweet set with engagement.")
    ap.add_argument("--n", type=int, default=10000, help="number of records")
    ap.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    ap.add_argument("--out", default="data/tweets.jsonl", help="output JSONL path ('-' for stdout)")
    args = ap.parse_args(argv)
    text = to_jsonl(generate_records(args.n, args.seed))
    if args.out == "-":
        sys.stdout.write(text)
        return
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {args.n} records to {args.out}")


if __name__ == "__main__":
    main()

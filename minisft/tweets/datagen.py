"""A synthetic, seeded set of instruction -> tweet pairs with engagement, and its engagement oracle.

The shipped data/tweets.jsonl is SYNTHETIC: no real account wrote these tweets, and the likes are drawn from the
model below, not observed. It exists so the whole SFT pipeline (weighting by engagement, evaluation of "would this
tweet do well?") can be built and tested offline and reproducibly:

    python -m minisft.tweets.datagen --n 10000 --seed 0 --out data/tweets.jsonl   # byte-identical every time

How a record is made: pick a source, one of its authors (busy accounts post more), a topic (mostly the author's
favourites) and a style; fill a style template with topic parts (parts.json) in the author's voice; ask
topics.instruction_for() for the instruction; then sample engagement.

Sources and authors. ROSTER comes from its own seed, so it is the same for every --seed and the oracle can grade
any record by its `author`. Audiences sit at the quantiles of a lognormal around AUDIENCE[source]:
    own      "me" (audience 25): mostly its 15 topics, lowercase, casual lead-ins and closers, few emoji
    viral    40 big tech accounts (~125..2,900, median 600): hook first lines, one sentence per line, 1-3 emoji
    diverse  300 mid-sized accounts (~13..500, median 80) on every topic: neutral sentence case, more hashtags
On top of its source's voice each account has its own habits: 2-4 favourite topics, openers (viral: hooks) and
sign-offs, an emoji palette, its own words for everyday ones ("&", "folks", "do not"), how it ends sentences,
hashtag casing, and how often it does each. They make its tweets recognisable and, with the "{a|b}" choices in the
content, keep texts apart: few 8-word runs repeat between tweets, so a model trained on them can't just copy.

The engagement model. expected_engagement() = audience(author, source) * wording_lift(text, topic, style): who posts
(the author's audience; an unknown author gets its source's median AUDIENCE) times what the wording earns, one lift
per documented text property. Deterministic; it reads only the text, labels and author:

    wording lift = STYLE_LIFT[style] * TOPIC_LIFT[topic]
                   * 1.40  if the text opens with a hook (a short first line, <= 60 chars, on its own line)
                   * 0.90  if it asks a question (contains "?"; questions trade likes for replies)
                   * 1.15  if it contains a number (outside hashtags)
                   * (1 + 0.08 per extra line, up to 4)              short lines are easier to read
                   * (1 + 0.10 per emoji, up to 2) * 0.90 per emoji beyond 3
                   * 0.85 per hashtag beyond 2                        hashtag spam looks like spam
                   * length curve 0.7 + 0.4 * exp(-((chars - 150) / 100)^2)   best near 150 characters
    STYLE_LIFT runs from humor 1.5 and hot_take 1.4 down to question 0.8; TOPIC_LIFT from llms 1.5 and career 1.35
    down to data_engineering 0.8 (the tables are right below the imports).

The sampled metrics of a record are what a real account would see around that expectation:
    likes       = expected * lognormal noise (mean 1, sigma 0.8) * a rare viral boost (2% of tweets, x5..x25),
                  divided by the boost's mean, so E[likes] = expected likes: heavy-tailed like real accounts
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import NormalDist

from minisft.tweets.topics import STYLES, TOPICS, guess_style, guess_topic, instruction_for, topic_mentioned

# The parts tweets are assembled from: content, not code, so it lives in parts.json. A tweet = a style template (how
# it is said) + topic parts poured into its slots (what it is about) + its author's voice (who says it). Every topic
# fills the same roles, so any template reads right:
#   name      noun for "{name} tip:", "{k} {name} mistakes"      craft  "{years} years of {craft}"
#   tools     things people use or compare                       pairs  [bad habit, better habit]
#   pains     noun phrases that can ruin a day                   facts  TIL-worthy facts (true ones)
#   claims    opinions for hot takes                             questions  open questions
#   habits    gerunds to laugh about                             wins   past-tense results, may hold {numbers}
#   tags      hashtags; the first one is a keyword of the topic, so it can be appended to any tweet
# Shared tails ("... in prod", "..., full stop") sometimes end a part; any string may hold choices "{a|b}" (one is
# picked per tweet; "{a|}" = a or nothing): people rarely say a thing twice in the same words.
PARTS = json.loads((Path(__file__).with_name("parts.json")).read_text(encoding="utf-8"))

SOURCES = ("own", "viral", "diverse")
SOURCE_SHARE = {"own": 0.3, "viral": 0.3, "diverse": 0.4}
MIX = PARTS["mix"]  # who writes what: the own account's topics, the viral favourites, each source's style weights
OWN_TOPICS = tuple(MIX["own_topics"])

# ---- the engagement model (see the module docstring) ----
AUDIENCE = {"own": 25.0, "viral": 600.0, "diverse": 80.0}  # the median account of each source
STYLE_LIFT = {"humor": 1.5, "hot_take": 1.4, "thread_hook": 1.3, "tip": 1.25, "story": 1.1, "til": 1.0,
              "question": 0.8}
TOPIC_LIFT = {"llms": 1.5, "career": 1.35, "dev_life": 1.3, "startups": 1.25, "python": 1.2,
              "machine_learning": 1.2, "javascript": 1.15, "productivity": 1.15, "debugging": 1.15, "security": 1.1,
              "rust": 1.1, "frontend": 1.1, "git": 1.0, "linux": 1.0, "open_source": 1.0, "system_design": 1.0,
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

# ---- the authors: a fixed roster, the same for every --seed ----
ROSTER_SEED = 2023
ROSTER_SIZE = {"viral": 40, "diverse": 300}
AUDIENCE_SIGMA = {"viral": 0.7, "diverse": 0.62}  # spread of log(audience) across the accounts of a source
ACTIVITY_SIGMA = 0.8  # log-spread of how much accounts post: a few post a lot, most now and then


@dataclass(frozen=True)
class Author:
    """One account: who it is, what it writes about, and its habits (see the module docstring)."""
    name: str
    source: str
    audience: float  # expected likes of a tweet whose wording lift is 1
    activity: float  # how much it posts, relative to the other accounts of its source
    topics: tuple[str, ...]  # its favourite topics, which get rates["focus"] of its tweets
    openers: tuple[str, ...]  # viral: its hooks; others: lead-ins ("ok so", "Quick thought:")
    signoffs: tuple[str, ...]
    emoji: tuple[str, ...]  # its palette, used next to the style's own emoji
    words: tuple[tuple[str, str], ...]  # its word for each everyday one ("and", "&"): rates["words"] of the time
    ending: str  # how its sentences end: "." as written, "" (no full stops), "!" or "..."
    lower_tags: bool  # #python rather than #Python
    shout: bool  # viral: its hook in CAPITALS
    rates: dict  # how often a tweet is on its topics, gets an opener, sign-off, emoji, its line breaks, hashtags


def _idiolect(rng: random.Random) -> tuple[tuple[str, str], ...]:  # its word for each everyday one, half as written
    return tuple((w, w if rng.random() < 0.5 else rng.choice(alts)) for w, alts in PARTS["variants"].items())


def _account(name: str, source: str, aud: float, fans: list[str], rng: random.Random) -> Author:
    viral, u = source == "viral", rng.uniform
    openers = rng.sample(PARTS["hooks"] if viral else PARTS["lead_ins"][source], 4 if viral else 2)
    rates = dict(focus=u(0.25, 0.55), opener=0.5 if viral else u(0.15, 0.5), signoff=u(0.2, 0.6), emoji=u(0.1, 0.45),
                 lines=u(0.3, 0.7), hashtag=u(0.1, 0.5) if viral else u(0.35, 0.85), words=0.6)
    return Author(name, source, float(round(aud)), activity=math.exp(rng.gauss(0, ACTIVITY_SIGMA)),
                  topics=tuple(dict.fromkeys(fans)), openers=tuple(openers),
                  signoffs=tuple(rng.sample(PARTS["closers"][source], 2)),
                  emoji=tuple(rng.sample(PARTS["author_emoji"], 3)), words=_idiolect(rng),
                  ending=rng.choice((".", ".", "", "!", "...")), lower_tags=rng.random() < 0.3,
                  shout=viral and rng.random() < 0.25, rates=rates)


def _roster() -> dict[str, Author]:
    rng = random.Random(ROSTER_SEED)  # private: the roster never depends on --seed
    me = Author("me", "own", AUDIENCE["own"], 1.0, topics=OWN_TOPICS, openers=tuple(PARTS["lead_ins"]["own"]),
                signoffs=tuple(PARTS["closers"]["own"]), emoji=(), words=_idiolect(rng), ending="", lower_tags=True,
                shout=False, rates=dict(focus=0.7, opener=0.35, signoff=0.3, emoji=0.25, lines=0.6, hashtag=0.08,
                                        words=0.4))
    roster, deck = {"me": me}, []
    for source, n in ROSTER_SIZE.items():
        # audiences at the quantiles of a lognormal around the source's median: the median account is exactly it
        quantiles = [NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]
        for aud in rng.sample([AUDIENCE[source] * math.exp(AUDIENCE_SIGMA[source] * z) for z in quantiles], n):
            if len(deck) < 4:  # favourite topics are dealt from shuffled decks: every topic has about as many fans
                deck += rng.sample(list(TOPICS), len(TOPICS))
            k, h = rng.randint(2, 4), PARTS["handles"]
            while (name := rng.choice(h["first"]) + rng.choice(h["join"]) + rng.choice(h["last"])) in roster:
                pass
            roster[name], deck = _account(name, source, aud, deck[:k], rng), deck[k:]
    return roster


ROSTER = _roster()
AUTHORS = {s: [a for a in ROSTER.values() if a.source == s] for s in SOURCES}


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


def _check(**labels):
    known = {"topic": sorted(TOPICS), "style": list(STYLES), "source": list(SOURCES)}
    for kind, value in labels.items():
        if value not in known[kind]:
            raise ValueError(f"unknown {kind} {value!r}; expected one of {known[kind]}")


def wording_lift(text: str, topic: str | None = None, style: str | None = None) -> float:
    """What the wording earns: the product of the style, topic and text lifts, no audience (None -> guessed)."""
    topic = guess_topic(text) if topic is None else topic
    style = guess_style(text) if style is None else style
    _check(topic=topic, style=style)
    f = text_features(text)
    lift = STYLE_LIFT[style] * TOPIC_LIFT[topic]
    lift *= HOOK_LIFT if f["hook"] else 1.0
    lift *= QUESTION_LIFT if f["question"] else 1.0
    lift *= NUMBER_LIFT if f["number"] else 1.0
    lift *= 1 + 0.08 * min(max(f["lines"] - 1, 0), 4)
    lift *= (1 + 0.10 * min(f["emoji"], 2)) * 0.90 ** max(f["emoji"] - 3, 0)
    lift *= 0.85 ** max(f["hashtags"] - 2, 0)
    lift *= 0.7 + 0.4 * math.exp(-(((f["chars"] - 150) / 100) ** 2))
    return lift


def audience(author: str | None, source: str) -> float:
    """Expected likes of a tweet by this author whose wording lift is 1: its roster audience, or the source's
    median AUDIENCE[source] for an author the generator doesn't know (None, a real account, another source's name)."""
    _check(source=source)
    known = ROSTER.get(author) if isinstance(author, str) else None
    return known.audience if known is not None and known.source == source else AUDIENCE[source]


def expected_engagement(text: str, topic: str | None = None, style: str | None = None, source: str = "own",
                        author: str | None = None) -> float:
    """Expected likes of a tweet under the synthetic engagement model: audience x wording lift (no noise)."""
    return audience(author, source) * wording_lift(text, topic, style)


def comment_rate(text: str, style: str | None = None) -> float:
    """Expected comments per like: questions and hot takes invite replies."""
    style = guess_style(text) if style is None else style
    _check(style=style)
    return COMMENT_BASE * COMMENT_STYLE[style] * (1.5 if "?" in text else 1.0)


def _lognormal(rng: random.Random, sigma: float) -> float:
    return math.exp(rng.gauss(-sigma * sigma / 2, sigma))  # mean exactly 1


def sample_engagement(text, topic, style, source, rng: random.Random, author=None) -> tuple[int, int, int]:
    """(likes, comments, impressions) drawn around the oracle for this author; see the module docstring."""
    boost = rng.uniform(VIRAL_LOW, VIRAL_HIGH) if rng.random() < VIRAL_P else 1.0
    expected = expected_engagement(text, topic, style, source, author)
    likes = round(expected * _lognormal(rng, LIKES_SIGMA) * boost / VIRAL_MEAN)
    comments = round(likes * comment_rate(text, style) * _lognormal(rng, COMMENTS_SIGMA))
    impressions = max(likes, round((likes + 1) / (LIKE_RATE[source] * _lognormal(rng, IMPRESSIONS_SIGMA))))
    return likes, comments, impressions


# ---- composing the text ----
_CHOICE = re.compile(r"\{((?:[^{}]|\{\w+\})*\|(?:[^{}]|\{\w+\})*)\}")  # {a|b}, which may hold {slots}
# Everyday words people say in their own way ("a lot of", "lots of", "tons of"): one pattern for them all.
_VARIANT_RE = re.compile(r"(?<![\w'&/-])(" + "|".join(map(re.escape, sorted(PARTS["variants"], key=len)[::-1]))
                         + r")(?![\w'-])", re.I)


def _choose(text: str, rng: random.Random) -> str:
    """Make every "{a|b|c}" choice ("{a|}": a or nothing), innermost first; "{slot}"s are left for format()."""
    while (made := _CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), text)) != text:
        text = made
    return re.sub(r"(?<=\S)  +(?=\S)", " ", text)  # "you {just|} found" -> "you found"


def _fill(template: str, topic: str, year: int, rng: random.Random) -> str:
    p = PARTS["topics"][topic]
    nums = dict(years=rng.randint(2, p["max_years"]), hours=rng.randint(2, 40), k=rng.randint(3, 12),
                pct=rng.randrange(15, 95, 5), mins=rng.randint(8, 55), secs=rng.randint(3, 40),
                small=rng.randint(2, 9), day=rng.choice(PARTS["weekdays"]), year=rng.randint(2012, year - 2), yr=year)

    def pick(part: str, kind: str | None = None) -> str:  # choices made, numbers in, half the time a shared tail
        if kind in PARTS["tails"] and rng.random() < 0.5:
            part += rng.choice(PARTS["tails"][kind])
        return _choose(part, rng).format(**nums)

    bad, good = rng.choice(p["pairs"])
    tool, tool2 = (pick(s) for s in rng.sample(p["tools"], 2))
    pain, pain2 = (pick(s, "pain") for s in rng.sample(p["pains"], 2))
    slots = dict(nums, name=p["name"], craft=pick(p["craft"]), tool=tool, tool2=tool2, bad=pick(bad, "bad"),
                 good=pick(good, "good"), pain=pain, pain2=pain2, habit=pick(rng.choice(p["habits"]), "habit"),
                 when=pick(rng.choice(PARTS["whens"])), fact=pick(rng.choice(p["facts"]), "fact"),
                 claim=pick(rng.choice(p["claims"]), "claim"), q=pick(rng.choice(p["questions"]), "q"),
                 win=pick(rng.choice(p["wins"]), "win"))
    for key in ("bad", "good", "pain", "claim", "fact", "q", "when", "habit", "win", "tool"):  # {Claim} = "Most..."
        slots[key.capitalize()] = slots[key][:1].upper() + slots[key][1:]
    return _choose(template, rng).format(**slots)


def _add_emoji(text: str, style: str, count: int, a: Author, rng: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(count):
        i = rng.choice([j for j, ln in enumerate(lines) if ln.strip()])
        lines[i] += " " + rng.choice(a.emoji if a.emoji and rng.random() < 0.5 else PARTS["style_emoji"][style])
    return "\n".join(lines)


def _habits(text: str, a: Author, rng: random.Random) -> str:
    """The account's tics: its own words for everyday ones (mostly), and how it ends sentences."""
    own = dict(a.words)

    def word(m):
        key = m.group().lower()
        w = own[key] if rng.random() < a.rates["words"] else rng.choice([key] + PARTS["variants"][key])
        return w[:1].upper() + w[1:] if m.group()[0].isupper() else w

    pieces = re.split(r"(`[^`]*`)", text)  # odd pieces are `code`: left alone
    text = "".join(p if i % 2 else _VARIANT_RE.sub(word, p) for i, p in enumerate(pieces))
    if a.ending != "." and rng.random() < 0.8:
        text = re.sub(r"(?<=[a-z)])\.(?=\s*(\n|$))", a.ending, text)
    return text


def _voice(body: str, topic: str, style: str, a: Author, rng: random.Random) -> str:
    """Dress the body in its author's voice: line breaks, emoji, its words, opener or hook, sign-off, hashtags."""
    viral = a.source == "viral"
    if viral:
        if rng.random() < a.rates["lines"]:
            body = re.sub(r"(?<=[a-z)])\. (?=[A-Z])", ".\n\n", body)  # one sentence per line
        body = _add_emoji(body, style, rng.choice((1, 1, 2, 2, 3)), a, rng)
    else:
        if rng.random() > a.rates["lines"]:
            body = re.sub(r"\s*\n+\s*", " ", body)  # everything on one line
        if rng.random() < a.rates["emoji"]:
            body = _add_emoji(body, style, 1, a, rng)
    body = _habits(body, a, rng)  # its own phrases below are added as it always writes them
    if style != ("thread_hook" if viral else "humor") and rng.random() < a.rates["opener"]:
        opener = _choose(rng.choice(a.openers), rng).format(years=rng.randint(2, 12), pct=rng.randrange(60, 95, 5))
        body = (opener.upper() if a.shout else opener) + ("\n\n" if viral else " ") + body
    if rng.random() < a.rates["signoff"]:
        body += rng.choice((" ", "\n\n")) + _choose(rng.choice(a.signoffs), rng)
    if rng.random() < a.rates["hashtag"]:  # the topic's tag, sometimes a general one
        tags = [rng.choice(PARTS["topics"][topic]["tags"]), rng.choice(PARTS["general_tags"])][:rng.choice((1, 2))]
        body += rng.choice((" ", "\n\n")) + " ".join(t.lower() if a.lower_tags else t for t in tags)
    return body.lower() if a.source == "own" else body


def compose_tweet(topic: str, style: str, source: str, year: int, rng: random.Random, author=None) -> str:
    """A tweet of this topic and style in the author's voice (None: the source's first), <= 280 chars, on topic."""
    _check(topic=topic, style=style, source=source)
    a = ROSTER[author] if author is not None else AUTHORS[source][0]
    for _ in range(50):
        text = _voice(_fill(rng.choice(PARTS["style_templates"][style]), topic, year, rng), topic, style, a, rng)
        if guess_topic(text) != topic or not topic_mentioned(text, topic):  # "Go" is no keyword: tag it
            tag = PARTS["topics"][topic]["tags"][0]
            text += " " + (tag.lower() if source == "own" or a.lower_tags else tag)
        if len(text) <= 280:
            return text
    raise RuntimeError(f"could not fit a {topic}/{style} tweet in 280 characters")


# ---- records ----
START = datetime(2023, 1, 1, tzinfo=timezone.utc)
DAYS = (datetime(2026, 1, 1, tzinfo=timezone.utc) - START).days
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 3, 3, 2, 1]  # people tweet by day


def _pick_topic(a: Author, rng: random.Random) -> str:
    if rng.random() < a.rates["focus"]:  # mostly its own subjects, sometimes anything
        return rng.choice(a.topics)
    topics = list(TOPICS)
    return rng.choices(topics, weights=[2 if a.source == "viral" and t in MIX["viral_favourites"] else 1
                                        for t in topics])[0]


def _record(rng: random.Random) -> dict:
    source = rng.choices(SOURCES, weights=[SOURCE_SHARE[s] for s in SOURCES])[0]
    a = rng.choices(AUTHORS[source], weights=[x.activity for x in AUTHORS[source]])[0]
    topic = _pick_topic(a, rng)
    style = rng.choices(STYLES, weights=[MIX["style_weights"][source][s] for s in STYLES])[0]
    when = START + timedelta(days=rng.randrange(DAYS), hours=rng.choices(range(24), weights=HOUR_WEIGHTS)[0],
                             minutes=rng.randrange(60))
    text = compose_tweet(topic, style, source, when.year, rng, a.name)
    likes, comments, impressions = sample_engagement(text, topic, style, source, rng, a.name)
    return {"id": "", "instruction": instruction_for(topic, style, rng), "response": text, "likes": likes,
            "comments": comments, "impressions": impressions, "topic": topic, "style": style, "source": source,
            "author": a.name, "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


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
    else:
        Path(args.out).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {args.n} records to {args.out}")


if __name__ == "__main__":
    main()

"""The synthetic tweet set: determinism, realism bars, the shipped file, and the engagement oracle."""

import json
import math
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from minisft.records import split_records
from minisft.tweets import datagen
from minisft.tweets.datagen import (AUDIENCE, PARTS, ROSTER, audience, comment_rate, expected_engagement,
                                    generate_records, text_features, to_jsonl, wording_lift)
from minisft.tweets.metrics import CopyDetector
from minisft.tweets.topics import STYLES, TOPICS, guess_style, guess_topic, topic_mentioned

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "tweets.jsonl"
KEYS = ["id", "instruction", "response", "likes", "comments", "impressions", "topic", "style", "source", "author",
        "created_at"]


@pytest.fixture(scope="module")
def sample():
    return generate_records(2000, 0)


@pytest.fixture(scope="module")
def shipped():
    return [json.loads(line) for line in SHIPPED.read_text(encoding="utf-8").splitlines()]


# ---- determinism and the shipped file ----
def test_same_seed_same_bytes_different_seed_different_bytes():
    a, b, c = to_jsonl(generate_records(300, 1)), to_jsonl(generate_records(300, 1)), to_jsonl(generate_records(300, 2))
    assert a == b and a != c


def test_shipped_file_is_exactly_generate_10000_seed_0():
    data = SHIPPED.read_bytes()
    assert data.count(b"\n") == 10000
    assert data == to_jsonl(generate_records(10000, 0)).encode("utf-8")


def test_cli_writes_what_generate_returns(tmp_path):
    out = tmp_path / "t.jsonl"
    datagen.main(["--n", "40", "--seed", "3", "--out", str(out)])
    assert out.read_text(encoding="utf-8") == to_jsonl(generate_records(40, 3))
    with pytest.raises(ValueError, match="n must be at least 1"):
        generate_records(0, 0)


# ---- schema ----
def test_schema_ids_and_dates(sample):
    for i, r in enumerate(sample, start=1):
        assert list(r) == KEYS
        assert r["id"] == f"syn-{i:06d}"
        assert r["topic"] in TOPICS and r["style"] in STYLES and r["source"] in datagen.SOURCES
        assert ROSTER[r["author"]].source == r["source"]  # every author is a roster account of its source
        assert all(isinstance(r[k], int) for k in ("likes", "comments", "impressions"))
        assert isinstance(r["instruction"], str) and r["instruction"]
        when = datetime.strptime(r["created_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert 2023 <= when.year <= 2025
    dates = [r["created_at"] for r in sample]
    assert dates == sorted(dates) and {d[:4] for d in dates} == {"2023", "2024", "2025"}


# ---- realism bars (on the shipped 10,000, which is deterministic) ----
def test_texts_are_unique_and_fit_in_a_tweet(sample, shipped):
    for records in (sample, shipped):
        texts = [r["response"] for r in records]
        assert len(set(texts)) / len(texts) >= 0.97
        assert max(len(t) for t in texts) <= 280 and min(len(t) for t in texts) >= 20


def test_topics_and_styles_are_balanced(shipped):
    for key, labels, minimum in (("topic", TOPICS, 20), ("style", STYLES, 6)):
        counts = Counter(r[key] for r in shipped)
        assert len(counts) >= minimum and set(counts) <= set(labels)
        mean = len(shipped) / len(labels)
        assert min(counts[k] for k in labels) >= mean / 2 and max(counts.values()) <= 2 * mean, key


def test_at_least_40_instruction_phrasings(shipped):
    from minisft.tweets.topics import TOPIC_NAMES

    phrasings = {r["instruction"].replace(TOPIC_NAMES[r["topic"]], "{t}") for r in shipped}
    assert len(phrasings) >= 40


def test_texts_look_like_tweets(shipped):
    feats = [text_features(r["response"]) for r in shipped]
    share = lambda pred: sum(map(pred, feats)) / len(feats)  # noqa: E731
    assert share(lambda f: f["emoji"] > 0) >= 0.3
    assert share(lambda f: f["number"]) >= 0.3
    assert share(lambda f: f["lines"] > 1) >= 0.3
    assert share(lambda f: f["hashtags"] > 0) >= 0.15
    assert share(lambda f: f["question"]) >= 0.1


def test_labels_agree_with_the_text(shipped):
    # The generator writes markers the guessers can read: the labels are not arbitrary.
    assert all(topic_mentioned(r["response"], r["topic"]) for r in shipped)
    assert sum(guess_topic(r["response"]) == r["topic"] for r in shipped) / len(shipped) >= 0.95
    assert sum(guess_style(r["response"]) == r["style"] for r in shipped) / len(shipped) >= 0.95


def test_each_source_has_its_own_voice(shipped):
    by = {s: [r["response"] for r in shipped if r["source"] == s] for s in datagen.SOURCES}
    mean = lambda s, key: statistics.mean(float(text_features(t)[key]) for t in by[s])  # noqa: E731
    assert all(t == t.lower() for t in by["own"])  # lowercase casual
    assert sum(t != t.lower() for t in by["diverse"]) / len(by["diverse"]) > 0.9
    assert mean("viral", "emoji") > 1.5 > mean("diverse", "emoji") and mean("own", "emoji") < 0.5
    assert mean("viral", "lines") > mean("diverse", "lines") and mean("viral", "hook") > 2 * mean("own", "hook")
    assert mean("diverse", "hashtags") > 2 * mean("own", "hashtags")
    assert len({r["topic"] for r in shipped if r["source"] == "diverse"}) == len(TOPICS)


def test_every_combination_composes_on_topic_within_280_chars():
    import random

    rng = random.Random(0)
    for topic in TOPICS:
        assert topic_mentioned(PARTS["topics"][topic]["tags"][0], topic)  # the fallback hashtag works
        for style in STYLES:
            for source in datagen.SOURCES:
                text = datagen.compose_tweet(topic, style, source, 2024, rng)
                assert len(text) <= 280 and guess_topic(text) == topic


def test_held_out_tweets_are_mostly_not_copied(shipped):
    # Real phrase variety: at least half of the held-out tweets share no 8-word run with the training split. Fixed
    # templates and sentences repeated verbatim would let a model score well by copying (metrics.CopyDetector). The
    # shipped set: 39% copied (other seeds 37-39%); before authors and "{a|b}" choices it was 93%.
    train, val = split_records(shipped, val_fraction=0.05, seed=0)
    copies = CopyDetector(r["response"] for r in train)
    assert sum(copies.is_copied(r["response"]) for r in val) / len(val) <= 0.5


def _word_counts(text: str) -> Counter:
    words = text.split()  # case kept: casing is part of a voice
    return Counter(words + [" ".join(pair) for pair in zip(words, words[1:])])


def test_author_voices_are_recognisable(shipped):
    # A nearest-centroid classifier on tf-idf word and word-pair counts, fit on the training split, names the author
    # of held-out tweets by the viral and diverse accounts with >= 20 training tweets (the own source is one account:
    # its voice is the source test above). Always guessing the busiest of them is right 6% of the time, a uniform
    # guess 1%; the classifier gets 0.50 (over seeds 1 and 2: 0.45 and 0.42, against 7% and 9%). 0.3 and 4x the
    # busiest-author guess leave room for a reseed, and no set of voices nobody could tell apart passes them.
    train, val = split_records(shipped, val_fraction=0.05, seed=0)
    counts = Counter(r["author"] for r in train if r["source"] != "own")
    authors = sorted(a for a, n in counts.items() if n >= 20)
    df = Counter(f for r in train for f in _word_counts(r["response"]))
    idf = {f: math.log(len(train) / n) for f, n in df.items()}

    def unit(text):
        v = {f: c * idf.get(f, math.log(len(train))) for f, c in _word_counts(text).items()}
        norm = math.sqrt(sum(x * x for x in v.values()))
        return {f: x / norm for f, x in v.items()}

    centroids = {a: Counter() for a in authors}
    for r in train:
        if r["author"] in centroids:
            centroids[r["author"]].update(unit(r["response"]))
    norms = {a: math.sqrt(sum(x * x for x in c.values())) for a, c in centroids.items()}
    held_out = [r for r in val if r["author"] in centroids]

    def guess(text):
        v = unit(text)
        return max(authors, key=lambda a: sum(x * centroids[a][f] for f, x in v.items()) / norms[a])

    accuracy = sum(guess(r["response"]) == r["author"] for r in held_out) / len(held_out)
    busiest = Counter(r["author"] for r in held_out).most_common(1)[0][1] / len(held_out)
    assert len(authors) >= 50 and len(held_out) >= 150
    assert accuracy >= 0.3 and accuracy >= 4 * busiest


# ---- the authors and the oracle's audience ----
def test_roster_is_fixed_and_spread_like_real_accounts(shipped):
    assert datagen._roster() == ROSTER  # its own seed: the same roster for every --seed
    for source, (n, low, high) in {"own": (1, 25, 25), "viral": (40, 100, 3500), "diverse": (300, 10, 600)}.items():
        accounts = datagen.AUTHORS[source]
        audiences = sorted(a.audience for a in accounts)
        assert len(accounts) == n and low <= audiences[0] and audiences[-1] <= high, source
        assert statistics.median(audiences) == pytest.approx(AUDIENCE[source], rel=0.05), source
        assert audiences[-1] >= 10 * audiences[0] or n == 1, source  # a realistic range, not one size
    assert [a.name for a in datagen.AUTHORS["own"]] == ["me"]
    posts = Counter(r["author"] for r in shipped)
    for source in ("viral", "diverse"):
        counts = sorted(posts[a.name] for a in datagen.AUTHORS[source])
        assert counts[-1] >= 3 * statistics.median(counts), source  # some accounts post far more than others


def test_oracle_is_audience_times_wording_lift(shipped):
    for r in shipped[:200]:
        args = (r["response"], r["topic"], r["style"])
        assert expected_engagement(*args, r["source"], r["author"]) == pytest.approx(
            audience(r["author"], r["source"]) * wording_lift(*args))
        assert audience(r["author"], r["source"]) == ROSTER[r["author"]].audience
    viral = datagen.AUTHORS["viral"][0].name
    assert audience(None, "viral") == audience("someone_real", "viral") == AUDIENCE["viral"]
    assert audience(viral, "diverse") == AUDIENCE["diverse"]  # a name of another source is not that account
    assert expected_engagement(BODY, "python", "tip", "own") == AUDIENCE["own"] * wording_lift(BODY, "python", "tip")
    with pytest.raises(ValueError, match="unknown source 'tiktok'"):
        audience("me", "tiktok")
    with pytest.raises(ValueError, match="unknown topic"):
        wording_lift(BODY, topic="cooking")


# ---- engagement ----
def test_engagement_is_heavy_tailed_and_consistent(sample):
    likes = np.array([r["likes"] for r in sample])
    assert np.percentile(likes, 99) >= 20 * np.median(likes)
    assert all(r["impressions"] >= r["likes"] >= 0 and r["comments"] >= 0 for r in sample)
    assert sum(r["comments"] < r["likes"] for r in sample) / len(sample) >= 0.9
    assert 0.03 < np.mean(likes >= 1000) < 0.3 and np.mean(likes < 100) > 0.3  # high and medium tweets


def test_sampled_likes_follow_the_oracle(sample):
    oracle = np.array([expected_engagement(r["response"], r["topic"], r["style"], r["source"], r["author"])
                       for r in sample])
    likes = np.array([r["likes"] for r in sample])
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(oracle), rank(likes))[0, 1] > 0.6  # a learnable signal
    assert 0.85 < np.mean(likes / oracle) < 1.15  # the oracle is the expected value of the noise model


def test_questions_get_more_comments_per_like(sample):
    def rate(style):
        rs = [r for r in sample if r["style"] == style and r["likes"] >= 20]
        return sum(r["comments"] for r in rs) / sum(r["likes"] for r in rs)

    assert rate("question") > 2 * rate("tip")
    assert comment_rate("What's your favorite vim plugin?") > comment_rate("Use vim.", "question")
    assert comment_rate("Use vim.", "question") > comment_rate("Use vim.", "tip")


# ---- the oracle is deterministic and monotone in its documented features ----
BODY = "Python tip: use pathlib for file paths instead of gluing strings together by hand"


def _e(text, **kw):
    return expected_engagement(text, topic="python", style="tip", **kw)


def test_oracle_is_deterministic_and_guesses_missing_labels():
    assert _e(BODY) == _e(BODY) > 0
    assert expected_engagement(BODY) == expected_engagement(BODY, guess_topic(BODY), guess_style(BODY), "own")
    assert _e(BODY, source="viral") > _e(BODY, source="diverse") > _e(BODY, source="own")
    with pytest.raises(ValueError, match="unknown source 'tiktok'"):
        _e(BODY, source="tiktok")
    with pytest.raises(ValueError, match="unknown topic"):
        expected_engagement(BODY, topic="cooking")


def test_oracle_rewards_documented_features():
    assert text_features("Real talk:\n\n" + BODY)["hook"] and not text_features(BODY)["hook"]
    assert _e("Real talk:\n\n" + BODY) > _e("Real talk: " + BODY)  # the hook (and the line break)
    assert _e(BODY + " in 3 minutes") > _e(BODY + " in a few minutes")  # a number
    assert _e(BODY + " ⚡") > _e(BODY) and _e(BODY + " ⚡💡") > _e(BODY + " ⚡")  # up to 2 emoji
    assert _e(BODY + " ⚡💡✅🙌🔥") < _e(BODY + " ⚡💡✅")  # emoji spam
    assert _e(BODY + " #a #b #c #d") < _e(BODY + " #a #b")  # hashtag spam
    assert _e(BODY + ".") < _e(BODY + ". Your future self will thank you.")  # toward ~150 characters
    assert _e(BODY + " " + "and so on " * 12) < _e(BODY + ". Your future self will thank you.")
    assert _e(BODY + "?") < _e(BODY + ".")  # a question trades likes for comments
    assert expected_engagement(BODY, "llms", "tip") > expected_engagement(BODY, "testing", "tip")
    assert expected_engagement(BODY, "python", "humor") > expected_engagement(BODY, "python", "question")

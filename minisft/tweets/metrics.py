"""Text metrics for generated tweets: pure functions of strings, no model, no files.

What "a good generated tweet" means here, one number per property, each a share or a ratio in [0, 1]:

  within_limit      fits in 280 characters (len() of the text, i.e. Unicode code points; X itself counts some
                    characters, such as emoji and links, differently, so treat 280 as the nominal limit)
  distinct_n        unique n-grams / all n-grams over ALL generated tweets together: low means the model says the
                    same things to every prompt (mode collapse), the classic failure of over-trained SFT
  repeated_ngram    a tweet repeats some 3-gram within itself ("i love it i love it"): the degenerate loop of a
                    weak model or a too-low temperature
  novel             not copied from the training set: no 8-gram shared with any training response, and not equal
                    to one (short tweets have no 8-gram at all). A model that memorised its data scores low here
  on_topic          the asked topic's keywords show up (topics.topic_mentioned)
  hook_share        opens with a hook: a short first line on its own (datagen.text_features, the oracle's reading)
  emoji_per_tweet   emoji per tweet (datagen.count_emoji)
Every one of them is computed for the held-out human tweets too (evaluate.py): a number means little until it sits
beside the same number for what people wrote.

Words are lowercase whitespace tokens ("Hello, world!" -> ["hello,", "world!"]): crude, but exactly reproducible,
and the same rule for generated and training text.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Iterable

from minisft.tweets.datagen import text_features
from minisft.tweets.topics import TOPICS, topic_mentioned

TWEET_LIMIT = 280
REPEAT_N = 3  # a tweet "loops" when it repeats a 3-gram within itself
COPY_N = 8  # a tweet is "copied" when it shares an 8-gram of words with a training response


def words(text: str) -> list[str]:
    """Lowercase whitespace tokens: the unit of every n-gram metric here."""
    return text.lower().split()


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """All n-grams of a token list, in order (none when the list is shorter than n)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def within_limit(text: str, limit: int = TWEET_LIMIT) -> bool:
    return len(text) <= limit


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams / total n-grams over all texts together (0.0 when there is no n-gram at all).

    distinct_n(["a b", "a c"], 1) = |{a, b, c}| / 4 = 0.75. Pooled over the whole set on purpose: a model that
    writes the same fine tweet for every prompt scores low even though each tweet alone looks varied.
    """
    counts = Counter(g for t in texts for g in ngrams(words(t), n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def has_repeated_ngram(text: str, n: int = REPEAT_N) -> bool:
    """True when some n-gram occurs twice (or more) in this one text."""
    grams = ngrams(words(text), n)
    return len(set(grams)) < len(grams)


def share(flags: Iterable[bool | None]) -> float | None:
    """The share of True among the flags that are not None (None when there are none)."""
    known = [bool(f) for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def repeated_ngram_rate(texts: Iterable[str], n: int = REPEAT_N) -> float | None:
    """Share of texts that repeat some n-gram within themselves."""
    return share(has_repeated_ngram(t, n) for t in texts)


def normalise(text: str) -> str:
    return " ".join(words(text))


class CopyDetector:
    """Is a text copied from a reference set (the training responses)?

    Built once: every 8-gram of every training response goes in a set, plus each whole response (normalised) for
    the tweets too short to have an 8-gram. Checking a tweet is then a handful of set look-ups.
    Memory: about one tuple per training word (10k tweets of ~25 words -> ~200k tuples), fine on a laptop.
    """

    def __init__(self, references: Iterable[str], n: int = COPY_N):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.whole: set[str] = set()
        for text in references:
            self.grams.update(ngrams(words(text), n))
            self.whole.add(normalise(text))

    def is_copied(self, text: str) -> bool:
        if normalise(text) in self.whole:
            return True
        return any(g in self.grams for g in ngrams(words(text), self.n))

    def is_novel(self, text: str) -> bool:
        return not self.is_copied(text)


def on_topic(text: str, topic: str | None) -> bool | None:
    """Does the text mention the asked topic? None when the record has no known topic (left out of the share)."""
    if topic is None or topic not in TOPICS:
        return None
    return topic_mentioned(text, topic)


def text_quality(texts: list[str], topics: list[str | None], copies: CopyDetector | None = None) -> dict:
    """Every metric of the module over a list of generated tweets (topics[i] is what tweet i was asked about).

    -> {"within_280", "distinct_1", "distinct_2", "repeated_3gram", "novelty", "on_topic", "mean_chars",
    "hook_share", "emoji_per_tweet"};
    novelty is None without a CopyDetector, on_topic None when no tweet has a known topic.
    """
    if len(texts) != len(topics):
        raise ValueError(f"{len(texts)} texts but {len(topics)} topics")
    return {
        "within_280": share(within_limit(t) for t in texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "repeated_3gram": repeated_ngram_rate(texts),
        "novelty": share(copies.is_novel(t) for t in texts) if copies is not None else None,
        "on_topic": share(on_topic(t, topic) for t, topic in zip(texts, topics)),
        "mean_chars": sum(len(t) for t in texts) / len(texts) if texts else None,
        "hook_share": share(text_features(t)["hook"] for t in texts),
        "emoji_per_tweet": sum(text_features(t)["emoji"] for t in texts) / len(texts) if texts else None,
    }


def bootstrap_interval(groups: list[list[float]], resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """A percentile bootstrap interval for the mean over groups (one group per prompt: its tweets' scores).

    Prompts are what vary between evaluations (another seed draws other tweets, but the spread between prompts,
    small accounts and big ones, is far larger), so the prompts are resampled with replacement, each bringing
    its own tweets. None when there is nothing to resample.
    """
    means = [statistics.fmean(g) for g in groups if g]
    if not means:
        return None
    rng = random.Random(seed)
    boot = sorted(statistics.fmean(rng.choices(means, k=len(means))) for _ in range(resamples))
    cut = (1 - level) / 2
    return boot[int(cut * resamples)], boot[min(resamples - 1, int((1 - cut) * resamples))]

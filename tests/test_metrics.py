"""Each tweet metric on hand-made inputs whose answer is known."""

import pytest

from minisft.tweets.metrics import (
    CopyDetector,
    distinct_n,
    has_repeated_ngram,
    ngrams,
    on_topic,
    repeated_ngram_rate,
    share,
    text_quality,
    within_limit,
    words,
)


def test_words_are_lowercase_whitespace_tokens():
    assert words("Hello,  World!\nBye") == ["hello,", "world!", "bye"]
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert ngrams(["a"], 2) == []
    with pytest.raises(ValueError):
        ngrams(["a"], 0)


def test_280_characters_is_the_limit():
    assert within_limit("x" * 280)
    assert not within_limit("x" * 281)
    assert not within_limit("y" * 300)
    assert within_limit("🚀" * 280)  # code points, not bytes


def test_distinct_n_on_a_known_list():
    texts = ["a b c", "A b d"]  # unigrams a b c a b d: 4 unique of 6; bigrams ab bc ab bd: 3 of 4
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["same tweet", "same tweet", "same tweet"], 2) == pytest.approx(1 / 3)  # pooled over tweets
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["one"], 2) == 0.0  # no bigram at all


def test_repeated_ngram_within_a_tweet():
    assert has_repeated_ngram("i love it and i love it")
    assert has_repeated_ngram("I love it. i love it.")  # lowercased
    assert not has_repeated_ngram("i love it and you love it")  # "love it" repeats, but no 3-gram does
    assert not has_repeated_ngram("too short")
    assert repeated_ngram_rate(["a b c a b c", "a b c d", "x y z x y z", "fine"]) == 0.5
    assert repeated_ngram_rate([]) is None


def test_a_copied_tweet_is_not_novel():
    train = ["the quick brown fox jumps over the lazy dog every morning", "ship it"]
    copies = CopyDetector(train)
    # eight consecutive training words inside a longer tweet: copied
    assert copies.is_copied("wow: The quick brown fox jumps over the lazy DOG, said nobody")
    # seven shared words only: novel
    assert copies.is_novel("quick brown fox jumps over the lazy cat")
    # a short training tweet has no 8-gram: an exact (normalised) repeat still counts as copied
    assert copies.is_copied("Ship   it")
    assert copies.is_novel("ship it now")
    assert copies.is_novel("something else entirely")


def test_topic_adherence_uses_the_topic_keywords():
    assert on_topic("pandas and numpy make my day", "python") is True
    assert on_topic("my cat sat on the keyboard", "python") is False
    assert on_topic("anything", None) is None
    assert on_topic("anything", "not-a-topic") is None


def test_share_ignores_unknowns():
    assert share([True, False, None, True]) == pytest.approx(2 / 3)
    assert share([None]) is None


def test_text_quality_puts_it_together():
    copies = CopyDetector(["one two three four five six seven eight nine"])
    texts = ["one two three four five six seven eight", "pip install numpy " + "x" * 300, "git git git git"]
    m = text_quality(texts, ["python", "python", "git"], copies)
    assert m["within_280"] == pytest.approx(2 / 3)
    assert m["novelty"] == pytest.approx(2 / 3)
    assert m["on_topic"] == pytest.approx(2 / 3)  # the first tweet mentions nothing Python
    assert m["repeated_3gram"] == pytest.approx(1 / 3)
    assert m["distinct_1"] == pytest.approx(distinct_n(texts, 1))
    assert m["mean_chars"] == pytest.approx(sum(map(len, texts)) / 3)
    assert text_quality(texts, [None] * 3)["novelty"] is None
    with pytest.raises(ValueError):
        text_quality(texts, ["python"])


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_prompts():
    import random as _random

    from minisft.tweets.metrics import bootstrap_interval

    rng = _random.Random(0)
    few = [[rng.gauss(100, 30) for _ in range(4)] for _ in range(10)]
    many = few + [[rng.gauss(100, 30) for _ in range(4)] for _ in range(190)]
    mean = lambda groups: sum(sum(g) / len(g) for g in groups) / len(groups)  # noqa: E731
    lo, hi = bootstrap_interval(few)
    assert lo < mean(few) < hi
    lo2, hi2 = bootstrap_interval(many)
    assert hi2 - lo2 < (hi - lo) / 2 and lo2 < 100 < hi2
    assert bootstrap_interval(few) == bootstrap_interval(few)  # seeded: the same report twice
    assert bootstrap_interval([]) is None

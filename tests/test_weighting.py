"""Engagement weights: mean 1 over the training split, monotone, clipped, always finite."""

import math
import statistics
import random

import numpy as np
import pytest

from minisft.weighting import SCHEMES, engagement, fit_weights

ENGAGED = ("linear", "log", "sqrt", "rank", "rate")


def rec(likes, comments=0, impressions=10_000):
    return {"likes": likes, "comments": comments, "impressions": impressions}


def heavy_tailed(n=300, seed=0):
    rng = random.Random(seed)
    return [rec(int(rng.paretovariate(1.2) * 5), rng.randint(0, 5), rng.randint(1000, 50_000)) for _ in range(n)]


def test_engagement_sums_the_metrics_present():
    assert engagement(rec(10, 3)) == 13
    assert engagement({"likes": 10, "comments": None}) == 10
    assert engagement({"likes": None}) is None and engagement({}) is None


def test_none_is_all_ones():
    train = heavy_tailed()
    weigh = fit_weights(train, "none")
    assert {weigh(r) for r in train + [rec(10**9), {}]} == {1.0}


@pytest.mark.parametrize("scheme", ENGAGED)
def test_mean_one_over_train_finite_and_capped(scheme):
    train = heavy_tailed() + [{"likes": None, "comments": None, "impressions": None}, rec(5, 0, 0)]
    weigh = fit_weights(train, scheme, max_weight=5.0)
    w = np.array([weigh(r) for r in train])
    assert np.isfinite(w).all() and (w > 0).all() and w.max() <= 5.0 + 1e-12
    assert w.mean() == pytest.approx(1.0, abs=1e-12)
    assert w.std() > 0.05  # it really weighs


@pytest.mark.parametrize("scheme", ("linear", "log", "sqrt", "rank"))
def test_monotone_in_engagement(scheme):
    train = heavy_tailed()
    weigh = fit_weights(train, scheme)
    ordered = sorted(train, key=engagement)
    w = [weigh(r) for r in ordered]
    assert all(a <= b for a, b in zip(w, w[1:]))
    assert w[-1] > w[0]


def test_one_viral_tweet_is_clipped_and_the_rest_scale_up():
    train = [rec(k % 10) for k in range(99)] + [rec(1_000_000)]
    weigh = fit_weights(train, "linear", max_weight=5.0)
    w = np.array([weigh(r) for r in train])
    assert w[-1] == 5.0 and w.mean() == pytest.approx(1.0)
    # below the cap, weights stay proportional to the score (1 + engagement): only the clip bends the scale
    assert w[3] / w[1] == pytest.approx(4 / 2)
    assert w[:-1].sum() == pytest.approx(len(train) - 5.0)  # the rest carry the remaining mass
    tight = fit_weights(train, "linear", max_weight=1.5)
    assert max(tight(r) for r in train) <= 1.5 and np.mean([tight(r) for r in train]) == pytest.approx(1.0)
    assert {fit_weights(train, "linear", max_weight=1.0)(r) for r in train} == {1.0}


def test_missing_metrics_get_the_median_weight():
    train = heavy_tailed(101)
    missing = {"likes": None, "comments": None, "impressions": None}
    for scheme in ENGAGED:
        weigh = fit_weights(train + [missing] * 10, scheme)
        w = sorted(weigh(r) for r in train)
        assert math.isfinite(weigh(missing)) and weigh(missing) == pytest.approx(w[50])  # the median record


def test_rate_never_divides_by_zero_and_uses_views():
    train = [rec(10, 0, 100), rec(10, 0, 10_000), rec(0, 0, 0), rec(3, 0, None), rec(50, 0, 1000)]
    weigh = fit_weights(train, "rate")
    w = [weigh(r) for r in train]
    assert all(math.isfinite(x) and x > 0 for x in w)
    assert w[0] > w[1]  # same likes, fewer views: a higher rate
    assert weigh(rec(0, 0, 0)) == weigh(rec(3, 0, None)) == weigh.fallback  # no views: the fallback
    assert np.mean(w) == pytest.approx(1.0)


def test_rank_averages_ties():
    train = [rec(0), rec(10), rec(10), rec(20), rec(7), rec(10)]
    weigh = fit_weights(train, "rank")
    e = [engagement(r) for r in train]
    ranks = [sum(x < v for x in e) + (sum(x == v for x in e) + 1) / 2 for v in e]  # average rank of ties, 1-based
    w = [weigh(r) for r in train]
    assert w == pytest.approx([r / np.mean(ranks) for r in ranks])
    assert 0 < weigh(rec(10**6)) <= weigh.max_weight and weigh(rec(5)) < weigh(rec(8))  # unseen values rank too


def test_bad_arguments():
    with pytest.raises(ValueError, match="scheme"):
        fit_weights([rec(1)], "quadratic")
    with pytest.raises(ValueError, match="max_weight"):
        fit_weights([rec(1)], "log", max_weight=0.5)
    assert set(SCHEMES) == {"none", *ENGAGED}


# ------------------------------------------------------------------------------------------- relative engagement

def two_audiences():
    """Two authors whose audiences differ 100x, each with tweets of the same wording quality q (likes = audience
    x q): raw likes say the big account's worst tweet beats the small account's best."""
    records = []
    for author, audience in (("small", 10), ("big", 1000)):
        for q in (0.5, 1, 1, 2, 4, 0.3):
            records.append({"likes": round(audience * q) - 1, "comments": 0, "author": author, "source": "own"})
    return records


def test_relative_engagement_puts_equal_wording_on_equal_footing():
    from minisft.weighting import EngagementSignal

    records = two_audiences()
    raw, relative = EngagementSignal.fit(records, "log", "raw"), EngagementSignal.fit(records, "log", "relative")
    small, big = records[:6], records[6:]
    assert raw(big[0]) > 10 * raw(small[4])  # raw: audience wins over wording
    for a, b in zip(small, big):  # relative: the same quality, the same value, whatever the audience
        assert relative(a) == pytest.approx(relative(b), rel=1e-9)
    assert relative(small[4]) > relative(small[0]) > relative(small[5])  # and quality still orders them
    for scheme in ("linear", "log", "sqrt", "rank"):
        weigh = fit_weights(records, scheme, signal="relative")
        assert [weigh(r) for r in small] == pytest.approx([weigh(r) for r in big], rel=1e-9)


def test_relative_falls_back_to_the_source_then_the_split_median():
    from minisft.weighting import EngagementSignal

    records = two_audiences() + [{"likes": 99, "author": "newcomer", "source": "own"},
                                 {"likes": 99, "author": "stranger", "source": None}]
    signal = EngagementSignal.fit(records, "linear", "relative")
    own_median = statistics.median(1 + r["likes"] for r in records if r["source"] == "own")
    all_median = statistics.median(1 + r["likes"] for r in records)
    assert signal.usual(records[-2]) == own_median  # one tweet: too few for an author median of its own
    assert signal.usual(records[-1]) == all_median  # no source either
    assert signal.usual(records[0]) == statistics.median(1 + r["likes"] for r in records[:6])
    assert signal({"likes": None}) is None  # missing stays missing


def test_rate_works_on_either_signal():
    records = [{**r, "impressions": 40 * (r["likes"] + 1)} for r in two_audiences()]
    for kind in ("raw", "relative"):
        weigh = fit_weights(records, "rate", signal=kind)
        w = np.array([weigh(r) for r in records])
        assert w.mean() == pytest.approx(1.0) and np.isfinite(w).all()

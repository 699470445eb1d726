"""The engagement predictor finds a planted signal, and admits (R^2 <= ~0) when there is none."""

import math
import random

import numpy as np
import pytest

from minisft.tweets.predictor import FEATURE_NAMES, EngagementPredictor, PredictorError, features, r2_score

WORDS = "code deploy bug coffee python rust server cache test merge branch release docs team week".split()


def tweets(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30)))
        if rng.random() < 0.5:
            text += "?"
        text += " #dev" * rng.randint(0, 3)
        out.append({"id": f"r{i}", "response": text, "topic": None})
    return out


def with_likes(records, fn, seed):
    rng = random.Random(seed)
    for r in records:
        r["likes"] = max(0, round(math.expm1(fn(r["response"], rng))))
    return records


def planted(text, rng):
    # log-likes grow with hashtags and fall with a question mark, plus a little noise
    return 2.0 + 0.9 * text.count("#dev") - 1.2 * ("?" in text) + rng.gauss(0, 0.2)


def noise(text, rng):
    return rng.gauss(3.0, 1.0)


def test_planted_signal_is_found():
    train = with_likes(tweets(400, 0), planted, 1)
    val = with_likes(tweets(200, 2), planted, 3)
    p = EngagementPredictor.fit(train)
    assert p.r2(val) > 0.8
    assert {name for name, _ in p.top_features(2)} == {"hashtags", "question"}
    coef = dict(p.top_features(len(FEATURE_NAMES)))
    assert coef["hashtags"] > 0 > coef["question"]


def test_noise_gives_no_held_out_r2():
    train = with_likes(tweets(400, 0), noise, 1)
    val = with_likes(tweets(200, 2), noise, 3)
    r2 = EngagementPredictor.fit(train).r2(val)
    assert -0.3 < r2 < 0.05


def test_missing_likes_are_left_out_not_zero():
    train = with_likes(tweets(60, 0), planted, 1)
    for r in train[::2]:
        r["likes"] = None
    p = EngagementPredictor.fit(train)
    assert p.n_train == 30
    with pytest.raises(PredictorError, match="only 10 of 60"):
        EngagementPredictor.fit([dict(r, likes=None) if i >= 10 else r for i, r in
                                 enumerate(with_likes(tweets(60, 0), planted, 1))])


def test_predictions_are_likes_and_features_have_names():
    p = EngagementPredictor.fit(with_likes(tweets(100, 0), planted, 1))
    likes = p.predict_likes(["code #dev #dev #dev", "code?"], [None, None])
    assert likes.shape == (2,) and (likes >= 0).all() and likes[0] > likes[1]
    assert features("hi", "python").shape == (len(FEATURE_NAMES),)
    assert features("pandas 🐍\nsecond line", None)[FEATURE_NAMES.index("topic=python")] == 1  # guessed topic


def test_r2_score_known_values():
    y = np.array([1.0, 2.0, 3.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(3, 2.0)) == 0.0
    assert r2_score(y, np.array([3.0, 2.0, 1.0])) == pytest.approx(-3.0)
    assert r2_score(np.ones(3), np.ones(3)) is None


def test_predictions_never_leave_the_range_of_the_training_tweets():
    # likes grow with length; a tweet ten times longer than any training tweet must not get ten times the likes
    records = with_likes(tweets(200, seed=5), lambda text, rng: 0.1 * len(text.split()) + rng.gauss(0, 0.1), seed=6)
    p = EngagementPredictor.fit(records)
    most = max(r["likes"] for r in records)
    monster = " ".join(["code"] * 300) + " 🚀" * 40 + " #dev" * 20
    assert p.predict_likes([monster], [None])[0] == pytest.approx(most, rel=1e-9)
    assert p.predict_likes([""], [None])[0] >= min(r["likes"] for r in records) - 1e-9


def test_loo_alpha_picks_the_penalty_with_the_least_brute_force_leave_one_out_error():
    from minisft.tweets.predictor import ALPHAS, loo_alpha

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(40, 6))
    y = Z @ np.array([1.0, 0.5, 0, 0, 0, 0]) + rng.normal(scale=2.0, size=40)
    y = y - y.mean()

    def brute(alpha):  # refit without row i, predict row i, for every i
        errors = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            w = np.linalg.solve(Z[keep].T @ Z[keep] + alpha * np.eye(6), Z[keep].T @ y[keep])
            errors.append((y[i] - Z[i] @ w) ** 2)
        return np.mean(errors)

    assert loo_alpha(Z, y) == ALPHAS[int(np.argmin([brute(a) for a in ALPHAS]))]

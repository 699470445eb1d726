"""A small engagement predictor for real (imported) data: ridge regression on simple text features.

For the shipped synthetic set we know exactly how engagement was made (datagen.expected_engagement, the oracle).
For your own tweets nobody knows, so evaluation fits this predictor on the TRAINING split and scores generated
tweets with it. Its held-out R^2 on the validation split is always reported next to its predictions: near 0 means
the features explain little of your likes, and the "expected likes" of generated tweets then mean little too.

    target    log1p(likes) by default (judges.py asks for log likes relative to the author's usual): likes are
              heavy-tailed, so a few viral tweets would otherwise decide every coefficient
    features  length, words, line breaks, "?", digits, emoji, hashtags, mentions, links, hook words, a short
              first line, length and emoji squared (so a sweet spot can be learned), the topic (one-hot over
              topics.TOPICS) and the style guessed from the text (one-hot over topics.STYLES)
    model     ridge regression, closed form in numpy, on features standardised with the training mean and std; its
              penalty chosen by exact leave-one-out error (loo_alpha)

Deliberately simple: it can only learn "tweets like THIS do better on this account", which is what the numbers of
one account support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from minisft.tweets.topics import STYLES, TOPICS, guess_style, guess_topic

MIN_RECORDS = 20  # fewer training tweets with likes than this and the fit is noise
HOOK_WORDS = ("hot take", "unpopular opinion", "thread", "here's", "how to", "stop", "nobody", "til", "pro tip",
              "psa", "you don't need", "the secret", "mistake", "lesson", "never", "always")
_HOOK_RE = re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(w) for w in HOOK_WORDS) + r")(?![a-z0-9])")
_TOPIC_KEYS = tuple(TOPICS)
BASE_FEATURES = ("chars", "words", "line_breaks", "question", "digits", "emoji", "hashtags", "mentions", "links",
                 "hook_words", "short_first_line", "chars^2", "emoji^2")
FEATURE_NAMES = BASE_FEATURES + tuple(f"topic={t}" for t in _TOPIC_KEYS) + tuple(f"style={s}" for s in STYLES)


class PredictorError(ValueError):
    """Not enough data to fit the predictor (the message says how much there was)."""


def _emoji(text: str) -> int:
    return sum(1 for ch in text if ord(ch) >= 0x1F000 or 0x2600 <= ord(ch) <= 0x27BF)


def features(text: str, topic: str | None = None) -> np.ndarray:
    """One tweet -> its feature vector [len(FEATURE_NAMES)]; topic None (or unknown) -> guessed from the text."""
    return np.array(_features(text, topic), dtype=np.float64)


@lru_cache(maxsize=1 << 16)
def _features(text: str, topic: str | None) -> tuple:
    # Cached: cross-fitting (conditioning.py) and the judges fit several predictors on the same tweets, and the
    # regular expressions and the style and topic guesses are most of the cost.
    low = text.lower()
    first_line = text.strip().split("\n", 1)[0]
    base = [
        len(text) / 100,  # scaled only for readability of raw vectors; the fit standardises anyway
        len(text.split()) / 10,
        text.count("\n"),
        "?" in text,
        bool(re.search(r"\d", text)),
        _emoji(text),
        len(re.findall(r"(?<!\w)#\w+", text)),
        len(re.findall(r"(?<!\w)@\w+", text)),
        len(re.findall(r"https?://\S+", text)),
        len(_HOOK_RE.findall(low)),
        "\n" in text.strip() and len(first_line) <= 60,
        (len(text) / 100) ** 2,  # squares let a linear model find a sweet spot: too short and too long both lose
        _emoji(text) ** 2,
    ]
    topic = topic if topic in TOPICS else guess_topic(text)
    style = guess_style(text)
    return tuple(float(x) for x in base + [t == topic for t in _TOPIC_KEYS] + [s == style for s in STYLES])


def feature_matrix(texts: list[str], topics: list[str | None]) -> np.ndarray:
    if not texts:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([features(t, topic) for t, topic in zip(texts, topics)])


def r2_score(y: np.ndarray, pred: np.ndarray) -> float | None:
    """1 - SS_res / SS_tot: 1 is perfect, 0 is "no better than predicting the mean", negative is worse.
    None when y is constant (R^2 is undefined)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    if ss_tot == 0.0:
        return None
    return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


ALPHAS = np.logspace(-2, 4, 13)  # the ridge penalties loo_alpha chooses from


def loo_alpha(Z: np.ndarray, y: np.ndarray) -> float:
    """The ridge penalty with the smallest leave-one-out error, computed exactly without refitting n times.

    For ridge the prediction is a linear map of y, y_hat = H y, and leaving row i out changes its residual to
    (y_i - y_hat_i) / (1 - H_ii). With Z = U S V' (thin SVD), H = U diag(s^2 / (s^2 + alpha)) U', so every
    alpha costs one pass over U: cheap for our ~35 features whatever the number of tweets.
    """
    U, sv, _ = np.linalg.svd(Z, full_matrices=False)
    Uy = U.T @ y
    best, best_err = float(ALPHAS[0]), np.inf
    for alpha in ALPHAS:
        shrink = sv**2 / (sv**2 + alpha)
        fitted = U @ (shrink * Uy)
        hat = (U**2) @ shrink
        err = float(np.mean(((y - fitted) / np.maximum(1 - hat, 1e-9)) ** 2))
        if err < best_err:
            best, best_err = float(alpha), err
    return best


def log_likes(record: dict) -> float | None:
    """The default target: log1p(likes), None when the record has no likes."""
    return None if record.get("likes") is None else float(np.log1p(record["likes"]))


def with_target(records: list[dict], target) -> tuple[list[dict], np.ndarray]:
    rows = [(r, y) for r in records if (y := target(r)) is not None]
    return [r for r, _ in rows], np.array([y for _, y in rows], dtype=np.float64)


@dataclass
class EngagementPredictor:
    mean: np.ndarray  # [F] training feature means
    std: np.ndarray  # [F] training feature stds (1 where a feature is constant)
    coef: np.ndarray  # [F] ridge coefficients on standardised features
    intercept: float  # mean target of the training tweets
    alpha: float
    n_train: int
    y_range: tuple[float, float] = (0.0, float("inf"))  # the training targets seen: predictions stay inside

    @classmethod
    def fit(cls, records: list[dict], alpha: float | None = None, target=log_likes) -> "EngagementPredictor":
        """Fit on records' responses; target(record) -> the number to predict, or None to leave the record out
        (by default log1p(likes): records whose likes are None are left out). alpha None: chosen by
        leave-one-out error (loo_alpha), so a few hundred tweets get a stronger penalty than ten thousand."""
        rows, y = with_target(records, target)
        if len(rows) < MIN_RECORDS:
            raise PredictorError(f"only {len(rows)} of {len(records)} training records have likes: the engagement "
                                 f"predictor needs at least {MIN_RECORDS}")
        X = feature_matrix([r["response"] for r in rows], [r.get("topic") for r in rows])
        mean, std = X.mean(0), X.std(0)
        std[std == 0] = 1.0  # a constant feature (e.g. a topic absent from the data) stays 0 after centring
        Z = (X - mean) / std
        alpha = alpha if alpha is not None else loo_alpha(Z, y - y.mean())
        # Ridge in closed form: (Z'Z + alpha I) w = Z'(y - mean y). The penalty keeps coefficients of rare or
        # collinear features (one-hot topics, chars vs words) small instead of letting them blow up.
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
        return cls(mean, std, w, float(y.mean()), alpha, len(rows), (float(y.min()), float(y.max())))

    def predict_log(self, texts: list[str], topics: list[str | None]) -> np.ndarray:
        """The predicted target [N] (log1p(likes) by default), clipped to the range of the training tweets.

        A linear model extrapolates without limit: a generated tweet with features far outside the training data
        (twice as long, ten emoji) would get a prediction far beyond any tweet it learned from, and one such row
        can dominate a mean. No evidence supports more than the best training tweet, so that is the ceiling.
        """
        X = feature_matrix(texts, topics)
        return np.clip(self.intercept + ((X - self.mean) / self.std) @ self.coef, *self.y_range)

    def predict_likes(self, texts: list[str], topics: list[str | None]) -> np.ndarray:
        """Predicted likes [N] (expm1 of the log prediction, never below 0), for the default target."""
        return np.maximum(np.expm1(self.predict_log(texts, topics)), 0.0)

    def r2(self, records: list[dict], target=log_likes) -> float | None:
        """R^2 of the target on these records (those that have one); None when there are fewer than 2."""
        rows, y = with_target(records, target)
        if len(rows) < 2:
            return None
        return r2_score(y, self.predict_log([r["response"] for r in rows], [r.get("topic") for r in rows]))

    def top_features(self, k: int = 5) -> list[tuple[str, float]]:
        """The k features with the largest |coefficient| (per standard deviation of the feature)."""
        order = np.argsort(-np.abs(self.coef))[:k]
        return [(FEATURE_NAMES[i], float(self.coef[i])) for i in order]

    def to_dict(self) -> dict:
        """Everything a saved judge needs, as JSON-ready numbers (judges.py writes it to the run folder)."""
        return {"features": list(FEATURE_NAMES), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "alpha": self.alpha,
                "n_train": self.n_train, "y_range": list(self.y_range)}

    @classmethod
    def from_dict(cls, d: dict) -> "EngagementPredictor":
        if d.get("features") != list(FEATURE_NAMES):
            raise PredictorError("the saved predictor was made with other text features than this version's")
        return cls(np.array(d["mean"]), np.array(d["std"]), np.array(d["coef"]), d["intercept"], d["alpha"],
                   d["n_train"], tuple(d["y_range"]))

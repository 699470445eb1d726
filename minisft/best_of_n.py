"""Best-of-n sampling: draw N candidates per prompt, let a judge score them, keep the best one.

The cheapest lever there is: no training, just more sampling. A model that writes a great tweet one time in eight
writes one for almost every prompt when it gets eight tries and something picks. Two costs:
  - N times the decoding. The N candidates of a prompt are N rows of ONE batched generate() call (the prompt
    repeated), so they share the batched prefill and decoding steps instead of N separate loops.
  - The judge's errors. The argmax of a noisy score selects exactly what the judge over-rates (Goodhart's law), so
    the tweets a judge picked must be graded by ANOTHER judge, or the report counts the picker's blind spots as
    wins. tweets/judges.py keeps the picker and the grader apart.
With N = 1 this is plain sampling: the same rows, the same random draws, the same tweets.
"""

from __future__ import annotations

from collections.abc import Callable

from minisft.sampling import generate


def best_of_n(model, prompts: list[list[int]], n: int, scores: Callable[[int, list[list[int]]], list[float]],
              max_new_tokens: int, **sampling) -> list[dict]:
    """One dict per prompt: {"tokens": the best candidate, "best": its index, "candidates": all n, "scores"}.

    scores(i, candidates) -> one number per candidate of prompt i (higher is better); the first best wins a tie.
    sampling: generate()'s settings (temperature, top_k, top_p, eos_id, seed or generator, ...).
    """
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    rows = [p for p in prompts for _ in range(n)]  # each prompt n times, side by side: [p0, p0, ..., p1, p1, ...]
    outs = generate(model, rows, max_new_tokens, **sampling)
    picked = []
    for i in range(len(prompts)):
        candidates = outs[i * n:(i + 1) * n]
        s = list(scores(i, candidates))
        best = max(range(n), key=s.__getitem__)
        picked.append({"tokens": candidates[best], "best": best, "candidates": candidates, "scores": s})
    return picked

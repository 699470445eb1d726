"""The SFT loss: cross-entropy on the response tokens only, each example scaled by its engagement weight.

The data side (data.py) already did the shift by one and the mask: `targets[b, t]` is the token that should follow
`input_ids[b, t]`, or IGNORE (-100) where nothing is learned (prompt positions, padding). So here a position is a
target exactly when `targets != IGNORE`, and the loss of one optimizer step is

    loss = sum over target tokens of  w(example) * CE(token)
           ---------------------------------------------------
           sum over the same target tokens of  w(example)

taken over EVERY target token of the step: all its micro-batches (gradient accumulation) and all processes (DDP).
With every weight 1 that is the plain token mean, whatever the accumulation or the padding.

The functions here return the two sums separately instead of a ratio, and the loop divides by the step's total
denominator. That is the whole trick against the classic accumulation bug: averaging per-micro-batch means gives a
short micro-batch (few targets) as much say as a long one, so the result depends on how you split the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100  # the target id that means "no loss here" (PyTorch's cross_entropy default ignore_index)


@dataclass
class LossSums:
    """Sums over the target tokens of one micro-batch. The loop adds these up over a step, then divides."""

    weighted: torch.Tensor  # sum of w * CE, a 0-d tensor that carries the graph
    weight: torch.Tensor  # sum of w over target tokens (no graph)
    nll: torch.Tensor  # sum of plain CE, unweighted (no graph): for perplexity and the unweighted loss
    tokens: int  # number of target tokens




def loss_sums(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> LossSums:
    """The weighted cross-entropy sums of one micro-batch, the textbook way.

    logits [B, T, V]: logits[b, t] scores the token after input_ids[b, t]. targets [B, T]: that token, or IGNORE.
    weights [B]: one engagement weight per example, spread over that example's target tokens.
    A micro-batch with no target gives zeros (never 0/0 = NaN), and backward() still works.
    """
    B, T, V = logits.shape
    # float32 for the softmax: over 50,257 classes, 16-bit rounding would distort the small probabilities.
    nll = F.cross_entropy(logits.float().reshape(B * T, V), targets.reshape(B * T), reduction="none",
                          ignore_index=IGNORE).view(B, T)  # -ln p(target) [B, T]; 0 at ignored positions
    is_target = (targets != IGNORE).float()  # the mask, [B, T]
    w = weights.float()[:, None] * is_target  # each target token carries its example's weight; 0 elsewhere
    return LossSums(weighted=(w * nll).sum(), weight=w.sum().detach(), nll=(nll * is_target).sum().detach(),
                    tokens=int(is_target.sum()))

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


def target_logits(hidden: torch.Tensor, lm_head_weight: torch.Tensor, targets: torch.Tensor):
    """Logits only where there is something to learn.

    hidden [B, T, C], targets [B, T] -> (logits [N, V] in float32, their targets [N], the flat positions [N]),
    where N is the number of target tokens. Prompt and padding positions never reach the 50257-wide output
    projection: for a tweet with a prompt as long as its response that halves the largest matmul of the model.
    """
    keep = (targets != IGNORE).flatten().nonzero().squeeze(1)  # [N] positions into the flattened B*T
    h = hidden.flatten(0, 1).index_select(0, keep)  # [N, C]
    # float32 logits: under bf16 autocast the log-softmax over 50k classes loses too much precision otherwise.
    logits = F.linear(h, lm_head_weight).float()  # [N, V]
    return logits, targets.flatten().index_select(0, keep), keep


def loss_sums(hidden, lm_head_weight, targets, weights) -> LossSums:
    """Weighted cross-entropy sums of one micro-batch.

    hidden [B, T, C] (the model's final hidden states), targets [B, T], weights [B] (one per example).
    A micro-batch with no target at all gives zeros (never 0/0 = NaN) and still a graph, so backward() works.
    """
    logits, tgt, keep = target_logits(hidden, lm_head_weight, targets)
    T = targets.size(1)
    w = weights.float().index_select(0, keep // T)  # each target token takes its example's weight: [N]
    nll = F.cross_entropy(logits, tgt, reduction="none")  # [N], -log p(correct next token)
    return LossSums(weighted=(w * nll).sum(), weight=w.sum().detach(), nll=nll.sum().detach(), tokens=int(tgt.numel()))


def full_logits_loss_sums(logits, targets, weights) -> LossSums:
    """The same sums from full logits [B, T, V]: the textbook form, kept to test `loss_sums` against."""
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.float().reshape(B * T, V), targets.reshape(B * T), reduction="none",
                          ignore_index=IGNORE).view(B, T)  # 0 at ignored positions
    is_target = (targets != IGNORE).float()
    w = weights.float()[:, None] * is_target  # [B, T]: the example's weight on its targets, 0 elsewhere
    return LossSums(weighted=(w * nll).sum(), weight=w.sum(), nll=(nll * is_target).sum().detach(),
                    tokens=int(is_target.sum()))

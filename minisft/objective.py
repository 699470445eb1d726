"""What training minimises: the model's next-token predictions scored by the SFT loss, as one module.

SFTObjective(input_ids [B, T], targets [B, T], weights [B]) -> the LossSums of loss.py for one micro-batch. One
module, so DistributedDataParallel and torch.compile see the whole forward pass, model and loss together.

Two paths, one switch (`--fast-head`, on by default):
  textbook   logits = model(input_ids) for every position, then loss.loss_sums: read this one first
  fast       fast_head.py: the same sums from the hidden states, logits only at the targets, in chunks
Both give the same loss and gradients (tests/test_loss.py); the fast one needs less memory and time.

`validation_loss` is the one way a run's validation loss is measured: by the training loop at every evaluation and
by `python -m minisft.evaluate` afterwards, with the same examples, weights, objective and precision.
"""

from __future__ import annotations

import math

import torch

from minisft import data as D
from minisft import fast_head
from minisft.loss import LossSums, loss_sums


class SFTObjective(torch.nn.Module):
    def __init__(self, model, fast: bool = True):
        super().__init__()
        self.model = model
        self.fast = fast

    def forward(self, input_ids, targets, weights) -> LossSums:
        if not self.fast:
            return loss_sums(self.model(input_ids), targets, weights)  # logits [B, T, V], then the masked CE
        hidden, head = fast_head.hidden_and_head(self.model, input_ids)  # [B, T, C]; logits only at targets
        return fast_head.head_loss_sums(hidden, head, targets, weights)


@torch.no_grad()
def validation_loss(objective, examples: list[D.Example], batch_size: int, pad_id: int, precision,
                    prefix: str = "val/") -> dict:
    """The loss on held-out examples: weighted (what training minimises), plain (every token alike), perplexity.

    val/loss = sum(w * CE) / sum(w) and val/loss_unweighted = sum(CE) / tokens, over all their target tokens;
    val/ppl = exp(val/loss_unweighted). Validation examples always score the response only (data.py), so runs
    trained with or without the prompt mask are judged alike.
    """
    if not examples:
        return {}
    was_training = objective.training
    objective.eval()
    device = next(objective.parameters()).device
    weighted = weight = nll = 0.0
    tokens = 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))  # little padding, same sums
    for start in range(0, len(order), batch_size):
        mb = D.collate([examples[i] for i in order[start:start + batch_size]], pad_id)
        with precision.autocast():
            s = objective(mb["input_ids"].to(device), mb["targets"].to(device), mb["weights"].to(device))
        weighted, weight, nll, tokens = (weighted + float(s.weighted), weight + float(s.weight),
                                         nll + float(s.nll), tokens + s.tokens)
    objective.train(was_training)
    plain = nll / max(tokens, 1)
    return {f"{prefix}loss": weighted / max(weight, 1e-12), f"{prefix}loss_unweighted": plain,
            f"{prefix}ppl": math.exp(min(plain, 50.0)), f"{prefix}target_tokens": tokens}

"""The optimizer and its learning-rate schedule: AdamW with decoupled weight decay, warm-up then cosine decay.

Fine-tuning changes pretrained weights a little, so the schedule starts gently (a linear warm-up: the first steps'
gradients come from an untrained optimizer state and are noisy) and ends low (a cosine down to a tenth of the peak).
"""

from __future__ import annotations

import math

import torch


def make_optimizer(model, lr: float, weight_decay: float, device: torch.device):
    """AdamW, with weight decay on 2-D weight matrices only (not on biases or LayerNorm gains)."""
    # the tied wte/lm_head tensor appears once; frozen weights (a LoRA base) get no optimizer state at all
    params = [p for p in dict.fromkeys(model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one pass over each parameter for the whole update, instead of one pass per arithmetic step (the
    # "foreach" default), which also makes a full-size temporary. On 2 CPU cores at the 124M shape: 42-78 ms
    # instead of 287-380 ms per update (python bench/step_parts.py). MPS keeps the default.
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then cosine decay to min_ratio * peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))

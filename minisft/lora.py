"""LoRA, written out: fine-tune a few small matrices beside each frozen weight, then fold them back in.

Full fine-tuning changes every weight W [out, in] and keeps, for each, a gradient and AdamW's two moments: 16 bytes
per parameter in fp32, 25 GB for gpt2-xl. LoRA (Hu et al., 2021) freezes W and learns a low-rank change instead:

    W' = W + (alpha / r) * B @ A          A [r, in], B [out, r], r << in, out

so a layer computes  y = x W^T + (alpha / r) * (x A^T) B^T  without ever forming B @ A. Only A and B get gradients
and optimizer state: at r = 16 on GPT-2's attention and MLP matrices that is under 1% of the parameters.
  - B starts at zero, so W' = W at step 0: training starts exactly at the base model (tested).
  - A starts small and random (Kaiming-uniform, as the paper's code), so the first gradient of B is not zero.
  - alpha / r scales the update so that changing r does not change how big a step the same learning rate takes.
  - The frozen W may be stored in bf16 (--base-dtype bf16): half the memory, and it is never updated, so no
    optimizer ever adds a small step to a coarse bf16 number. A and B stay in float32.
At export the update is folded in, W' = W + (alpha / r) B A in float32, and the checkpoint is a plain GPT-2 folder:
transformers, sample.py and evaluate read it like any other. The adapters are saved beside it for resume.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

TARGETS = {"attn": ("attn.c_attn", "attn.c_proj"), "attn+mlp": ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                "mlp.c_proj")}
ADAPTERS_FILE = "adapters.safetensors"


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (A, B). Same input and output as the linear it wraps."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                 base_dtype: torch.dtype | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        if base_dtype is not None:
            self.base.to(base_dtype)
        self.rank, self.scale = rank, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        w, b = self.base.weight, self.base.bias
        if not torch.is_autocast_enabled(x.device.type) and w.dtype != x.dtype:
            w, b = w.to(x.dtype), None if b is None else b.to(x.dtype)  # a bf16 base under fp32 compute
        return F.linear(x, w, b) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scale

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / r) B A, in float32: the weight a plain linear needs to compute the same thing."""
        with torch.no_grad():
            return self.base.weight.float() + self.scale * (self.lora_B @ self.lora_A)


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float = 0.0, targets: str = "attn+mlp",
             base_dtype: torch.dtype | None = None) -> nn.Module:
    """Freeze every parameter of `model` and wrap the target linears of each block in LoRALinear (in place).
    base_dtype casts the wrapped linears' frozen weights (nearly all of a GPT-2's); the embeddings and
    LayerNorms stay float32 and frozen."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    model.requires_grad_(False)
    for block in model.transformer.h:
        for path in TARGETS[targets]:
            parent_name, name = path.split(".")
            parent = getattr(block, parent_name)
            setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha, dropout, base_dtype))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors only: what a checkpoint needs, with the base, to resume."""
    return {f"{name}.{part}": getattr(m, part).detach().cpu().contiguous()
            for name, m in lora_layers(model).items() for part in ("lora_A", "lora_B")}


def load_adapter_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    layers = lora_layers(model)
    expected = {f"{name}.{part}" for name in layers for part in ("lora_A", "lora_B")}
    if set(tensors) != expected:
        raise ValueError(f"the saved adapters don't match this model's LoRA layers ({len(tensors)} tensors saved, "
                         f"{len(expected)} expected): resume with the run's own --lora-* settings")
    with torch.no_grad():
        for key, t in tensors.items():
            name, part = key.rsplit(".", 1)
            getattr(layers[name], part).copy_(t)


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under plain GPT-2 names, each LoRA layer folded in (float32): what save_model writes."""
    state = {}
    layers = lora_layers(model)
    for name, p in model.named_parameters():
        owner = next((k for k in layers if name.startswith(k + ".")), None)
        if owner is None:
            state[name] = p.detach()
        elif name == f"{owner}.base.weight":
            state[f"{owner}.weight"] = layers[owner].merged_weight()
        elif name == f"{owner}.base.bias":
            state[f"{owner}.bias"] = p.detach().float()
    return state


def count(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters; the tied embedding counted once."""
    params = list(dict.fromkeys(model.parameters()))
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

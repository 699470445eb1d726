"""The speed machinery of decoding on CPU, in one room: the same logits as the plain model, read from memory faster.

Decoding one token multiplies a [B, C] row block by every weight matrix once, so at batch 1 a step is a race to
stream ~124M weights out of memory (248 MB in bf16): the limit is memory bandwidth / weight bytes. How fast a
matrix-vector product streams depends on how its weight is laid out in memory, not only on its dtype. Two layouts,
each measured on this project's 2-core CPU (`python bench/sample_speed.py --levers`, bench/README.md):

  fp32 weights   transpose_for_matvec: store each [out, in] matrix as [in, out] (the way GPT-2's original Conv1D
                 stored them). Same shape and values, only the strides change; batch-1 decoding ~1.3x faster.
  bf16 weights   prepack: reorder each matrix ONCE into oneDNN's blocked layout, the one its matmul kernel reads
                 fastest (nn.Linear hands it the plain [out, in] matrix at every call). The same kernel then runs
                 on the packed copy: the logits are bit for bit those of F.linear on this CPU, and a
                 token takes 1.4-1.7x less time (batch 1 and 8).

The teaching path is `sampling.generate` on plain nn.Linear layers; `sampling.for_inference(..., fast=False)`
(sample.py --no-fast-decode) keeps it, and tests/test_sampling.py pins that both paths give the same tokens.
What was measured and left out (torch.compile of the step, weight-only int8) is in bench/README.md; where a step's
time goes, `python bench/decode_parts.py`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from minisft.precision import cpu_has_bf16


def can_prepack(weight: torch.Tensor) -> bool:
    """True where the packed bf16 kernel exists and pays: a CPU with native bf16 (AVX512-BF16 or AMX) and oneDNN."""
    return (weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and cpu_has_bf16())


class PrepackedLinear(nn.Module):
    """nn.Linear's forward on a weight reordered once for oneDNN: x [..., in] -> x W^T + b [..., out].

    rows: the batch rows the kernel is tuned for (a hint only: any number of rows works, prefill included).
    The packed weight is an opaque oneDNN tensor, not a Parameter: this module is for inference only.
    """

    def __init__(self, linear: nn.Linear, rows: int = 1):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [..., in] -> [rows, in]: the kernel runs a little faster on a 2-D input than on [B, T, in] (measured).
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.packed, self.bias, "none",
                                               [], "")
        return y.view(*x.shape[:-1], self.out_features)

    def __deepcopy__(self, memo):
        # oneDNN's opaque tensor cannot be copied; it is never written to, so a copy of the model may share it.
        twin = PrepackedLinear.__new__(PrepackedLinear)
        nn.Module.__init__(twin)
        twin.in_features, twin.out_features, twin.packed, twin.bias = (
            self.in_features, self.out_features, self.packed, self.bias)
        return twin

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def is_prepacked(model: nn.Module) -> bool:
    return any(isinstance(m, PrepackedLinear) for m in model.modules())


def prepack(model: nn.Module, rows: int = 1) -> nn.Module:
    """Swap every nn.Linear of `model` (in place) for a PrepackedLinear. -> model.

    The output head is tied to the token embedding; the embedding keeps its plain matrix (a lookup needs rows) and
    the head gets its own packed copy: 77 MB more at the 124M shape in bf16, while the blocks' plain matrices go.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, PrepackedLinear(child, rows))
    return model


def transpose_for_matvec(model: nn.Module) -> nn.Module:
    """Store each fp32 nn.Linear weight [out, in] as [in, out] in memory (W.t().contiguous().t()), in place.

    On CPU a [1, C] x [C, out] product in fp32 streams the weights faster this way. Measured at the 124M shape on
    2 cores: batch 1 about 1.3x faster per token (the common case: one tweet at a time), batch 8 about 5-8%
    slower. A tied head keeps its embedding: the embedding is pointed at the head's new tensor.
    """
    tied = model.lm_head.weight is model.transformer.wte.weight
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.is_contiguous():
            w = module.weight.detach()
            module.weight = nn.Parameter(w.t().contiguous().t(), requires_grad=False)
    if tied:
        model.transformer.wte.weight = model.lm_head.weight  # the head got a new tensor: re-tie the embedding
    return model

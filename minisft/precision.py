"""Which device, and in which number format the forward and backward passes run.

Mixed precision ("AMP") keeps the weights and the optimizer in float32 and runs the matmuls in a 16-bit format
inside `torch.autocast`:
  - bf16 has float32's range, so it needs nothing else: the default on GPUs that have it (Ampere and newer);
  - fp16 has a narrow range, so small gradients underflow to 0: a GradScaler multiplies the loss by a large factor
    before backward() and divides the gradients back (unscale) before clipping and the update, skipping steps
    whose gradients overflowed. The default only on older GPUs.
On a CPU with bf16 units (AVX512-BF16 or AMX) the default is bf16 autocast for GPT-2-sized models, float32
elsewhere (default_dtype says why; bench/README.md has the measurements).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("--device mps was asked for, but this PyTorch has no Apple MPS backend")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


BF16_MIN_PARAMS = 16_000_000  # CPU: bf16 by default from this size up (every GPT-2; not the 1.3M tiny model)


def cpu_has_bf16() -> bool:
    """Does this CPU multiply in bf16 natively? Without it, PyTorch emulates bf16, slower than float32."""
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return bool(has_bf16() or has_amx())


def default_dtype(device: torch.device, n_params: int | None = None) -> str:
    """The precision `--dtype auto` picks for a model of n_params parameters on `device`.

    CUDA: bf16 where the GPU has it, else fp16 with loss scaling.
    CPU with native bf16, models of BF16_MIN_PARAMS and more: bf16 autocast. Measured on 2 cores with AVX512-BF16
    (bench/README.md): the 124M shape trains 1.8x faster than in float32 (313 vs 172 tokens/s), its loss within
    0.02% of float32's at every step of a 20-step run on the tweets. The tiny model stays in float32: there bf16 is
    slower (12,199 vs 13,481 tokens/s: the casts cost more than its small matmuls save), and the README's
    experiments were measured in float32.
    Elsewhere float32 (MPS, CPUs without bf16 units, and callers that don't say the size).
    """
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and n_params is not None and n_params >= BF16_MIN_PARAMS and cpu_has_bf16():
        return "bf16"
    return "fp32"


@dataclass
class Precision:
    device: torch.device
    dtype: str  # fp32 | bf16 | fp16
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        if self.dtype == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_and_clip(self, optimizer, params, grad_clip: float) -> float:
        """Unscale (fp16), then clip. Returns the gradient norm before clipping: inf or NaN when a gradient is."""
        params = [p for p in params if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        if grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().float().norm() for p in params]))
        return float(norm)

    def update(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)  # skipped when the gradients hold inf/NaN, then the scale is lowered
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def pick_precision(device: torch.device, dtype: str = "auto", n_params: int | None = None) -> Precision:
    """The Precision for --dtype `dtype` ("auto": default_dtype for a model of n_params parameters)."""
    dtype = default_dtype(device, n_params) if dtype == "auto" else dtype
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--dtype bf16: this GPU has no bf16 support; use --dtype fp16")
    scaler = torch.amp.GradScaler(device.type) if dtype == "fp16" else None
    return Precision(device=device, dtype=dtype, scaler=scaler)

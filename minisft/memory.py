"""How much memory and time a run will take, worked out before a single weight is loaded.

Training memory is a few parts, each a line of arithmetic (P = parameters, T = tokens per micro-batch):

  weights      P x 4 bytes in float32 (a LoRA base stored in bf16: 2 for the wrapped matrices)
  gradients    4 bytes per TRAINABLE parameter (LoRA: only the adapters)
  optimizer    AdamW keeps two moments per trainable parameter: 8 bytes each
  activations  what the forward pass keeps for backward, per token and per block: ACT_BYTES x the width C (the
               inputs of every matmul, the GELU's, the normalisations'; under autocast most are 16-bit, and the
               16-bit copies autocast makes of the weights are kept too) plus, per head, a row of the attention
               matrix; with activation checkpointing only each block's input is kept
  transient    what lives for a moment: a chunk of the output head's logits and its gradient, the block being
               recomputed under checkpointing
plus the runtime itself (Python, PyTorch, the allocator's slack). The peak is not the sum: backward frees each
block's activations as it makes that block's gradients, so only the larger of the two is held (Plan.total).
Full fine-tuning of gpt2-xl in fp32 is 1.56B x 16 bytes = 25 GB before any activation: it fits neither a 24 GB GPU
nor this project's 24 GB machine, and the plan says so before the download.

Time: a training step does about 6 x P x T floating-point operations (forward 2PT, backward 4PT: the gradient of
the inputs and of the weights); LoRA skips the base's weight gradients, about 4 x P x T; checkpointing adds the
blocks' forward pass again, 2PT. Divided by the device's matmul rate, measured by a one-second probe, and by the
share of that rate a training step reaches (EFFICIENCY, measured in bench/).
The constants below are measured on this project's bench (python bench/sizes.py) and checked against it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch

from minisft.model import GPTConfig

GIB = 1024**3
RUNTIME = 0.30 * GIB  # Python, PyTorch, the allocator's slack: fitted to the peaks of bench/sizes.py
# What the forward pass keeps for backward, in bytes per token per block, per unit of the width C: counted with
# torch.autograd.graph.saved_tensors_hooks on a GPT-2 block (the inputs of the four matmuls, LayerNorms, GELU,
# dropout masks...). Under bf16 autocast most of them are 16-bit copies; the residual stream stays float32.
ACT_BYTES = {"fp32": 72, "bf16": 46, "fp16": 46}
LORA_ACT_BYTES = 19  # LoRA adds, per block: the dropout masks and 16-bit copies of its adapters' inputs
ATTN_BYTES = 12  # and per head and per key: the attention probabilities, their dropout mask, the dropped ones
CHUNK = 512  # the fast head's logits chunk (fast_head.CHUNK): its logits and their gradient live at once
KEPT_SHARE = 0.07  # --keep-freed-memory's extra peak: 1.05-1.08x at 124M bf16 (bench/README.md)
EFFICIENCY = {"fp32": 0.7, "bf16": 0.55, "fp16": 0.55}  # share of the probed matmul rate a step reaches (bench/)
LORA_SHAPES = {"attn.c_attn": (1, 3), "attn.c_proj": (1, 1), "mlp.c_fc": (1, 4), "mlp.c_proj": (4, 1)}  # in, out / C


@dataclass
class Plan:
    weights: float  # bytes
    gradients: float
    optimizer: float
    activations: float
    first_gradients: float = 0.0  # gradients made before backward frees any activation: the tied embedding's
    transient: float = 0.0  # buffers of one moment: the head's logits chunk, a block being recomputed
    runtime: float = RUNTIME
    kept: float = 0.0  # --keep-freed-memory: what the allocator keeps instead of handing back (KEPT_SHARE)
    flops: float = 0.0  # per micro-batch

    @property
    def total(self) -> float:
        """The peak. Backward frees each block's activations as it makes that block's gradients, so the two are
        never all held at once: the peak holds the larger of (every activation + the embedding's gradient, which
        the output head makes first) and (every gradient)."""
        return (self.weights + self.optimizer + max(self.activations + self.first_gradients, self.gradients)
                + self.transient + self.runtime + self.kept)

    def breakdown(self) -> str:
        """The --plan table: each part in GiB, and the work of one micro-batch."""
        return "\n".join(f"  {name:12} {getattr(self, name) / GIB:7.2f} GiB" for name in
                         ("weights", "gradients", "optimizer", "activations", "transient", "runtime", "kept")
                         if name != "kept" or self.kept) + \
            f"\n  {'peak':12} {self.total / GIB:7.2f} GiB   (gradients and activations overlap: Plan.total; " \
            f"{self.flops / 1e12:.2f} TFLOP per micro-batch)"

    def line(self) -> str:
        parts = (("weights", self.weights), ("gradients", self.gradients), ("optimizer", self.optimizer),
                 ("activations", self.activations), ("transient", self.transient), ("runtime", self.runtime),
                 *((("kept", self.kept),) if self.kept else ()))
        return f"memory plan: ~{self.total / GIB:.1f} GiB peak, of " + " + ".join(f"{n} {b / GIB:.2f}"
                                                                                 for n, b in parts)


def matrices(config: GPTConfig) -> int:
    """Parameters of the matrices a block multiplies by (c_attn, c_proj, c_fc, c_proj): 12 C^2 per block."""
    return 12 * config.n_embd**2 * config.n_layer


def parameters(config: GPTConfig) -> int:
    """Every parameter of GPT-2 (the tied embedding once): token and position embeddings, 12 C^2 + 13 C per block
    (matrices, biases, two LayerNorms), the final LayerNorm."""
    C, L = config.n_embd, config.n_layer
    return (config.vocab_size + config.n_positions) * C + L * (12 * C * C + 13 * C) + 2 * C


def lora_parameters(config: GPTConfig, rank: int, targets: str) -> int:
    """A [r, in] and B [out, r] for each targeted matrix of each block."""
    from minisft.lora import TARGETS

    return config.n_layer * sum(rank * (i + o) * config.n_embd for name, (i, o) in LORA_SHAPES.items()
                                if name in TARGETS[targets])


def plan(config: GPTConfig, batch: int, seq: int, dtype: str = "fp32", lora_rank: int = 0,
         lora_targets: str = "attn+mlp", base_dtype: str = "fp32", checkpointing: bool = False) -> Plan:
    """The memory plan of one training step of `batch` x `seq` tokens per micro-batch (see the module docstring)."""
    C, L, H, V = config.n_embd, config.n_layer, config.n_head, config.vocab_size
    P, M = parameters(config), matrices(config)
    half, tokens = dtype in ("bf16", "fp16"), batch * seq
    wrapped = (M if lora_targets == "attn+mlp" else 4 * C * C * L) if lora_rank else 0
    trainable = lora_parameters(config, lora_rank, lora_targets) if lora_rank else P
    base_bytes = 2 if lora_rank and base_dtype == "bf16" else 4
    weights = (P - wrapped) * 4 + wrapped * base_bytes + (trainable * 4 if lora_rank else 0)
    # autocast's 16-bit copies of the float32 matrices: kept for backward, then freed, like activations
    copies = M * 2 if half and base_bytes == 4 else 0
    block = tokens * ((ACT_BYTES[dtype] + (LORA_ACT_BYTES if lora_rank else 0)) * C + ATTN_BYTES * H * seq)
    # checkpointing keeps each block's float32 input; backward recomputes one block's insides at a time
    activations = L * tokens * C * 4 if checkpointing else L * block + copies
    transient = 2 * CHUNK * V * 4 + 2 * tokens * C * 4  # the head's logits chunk and its gradient; the final hidden
    # a block being recomputed: its insides, their gradients, and the allocator's churn measure about three blocks
    transient += 3 * block + copies / L if checkpointing else 0
    first = 0 if lora_rank else (V + config.n_positions) * C * 4
    flops = (4 if lora_rank else 6) * (M + V * C) * tokens + 12 * L * C * seq * tokens  # matmuls + attention
    if checkpointing:  # the blocks' forward pass, run a second time in backward
        flops += 2 * M * tokens + 4 * L * C * seq * tokens
    return Plan(weights, trainable * 4, trainable * 8, activations, first, transient, flops=flops)


@lru_cache(maxsize=8)  # once per device and dtype in a process
def matmul_rate(device: torch.device, dtype: str = "fp32", seconds: float = 1.0, windows: int = 10) -> float:
    """The device's matmul rate in FLOP/s: square products of 1024 in the run's dtype for ~`seconds`, the best of
    `windows` short windows (on a shared machine one long average swings 2-3x with the neighbours' load; the best
    window is the machine's own speed, and EFFICIENCY is measured against it)."""
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if device.type == "cpu" and dtype == "fp16":
        dt = torch.float32  # CPUs have no fast fp16 matmul; the run would not use it there
    a = torch.randn(1024, 1024, device=device, dtype=dt)
    b = torch.randn(1024, 1024, device=device, dtype=dt)
    a @ b  # warm up (the first call picks a kernel)
    best = 0.0
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            a @ b
            n += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
        best = max(best, n * 2 * 1024**3 / (time.perf_counter() - start))
    return best


def step_seconds(p: Plan, rate: float, dtype: str = "fp32") -> float:
    return p.flops / (rate * EFFICIENCY[dtype])


def free_memory(device: torch.device) -> float:
    """Bytes free for this run: the GPU's free memory, or on a CPU the kernel's MemAvailable."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return float(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError):
        return float("inf")  # not Linux: nothing to check against


def levers(config: GPTConfig, batch: int, seq: int, dtype: str, limit: float) -> list[str]:
    """What would fit in `limit` bytes, each with its plan: the levers a user can pull, cheapest first."""
    options = []
    for b in (batch // 2, batch // 4, 1):
        if 1 <= b < batch:
            options.append((f"--batch-size {b} --grad-accum {batch // b} (the same step)",
                            plan(config, b, seq, dtype)))
    options += [("--activation-checkpointing", plan(config, batch, seq, dtype, checkpointing=True)),
                ("--lora-rank 16 --base-dtype bf16", plan(config, batch, seq, "bf16", 16, base_dtype="bf16")),
                ("--lora-rank 16 --base-dtype bf16 --activation-checkpointing",
                 plan(config, batch, seq, "bf16", 16, base_dtype="bf16", checkpointing=True))]
    return [f"{flag} (~{p.total / GIB:.1f} GiB)" for flag, p in options if p.total <= limit]


CHARS_PER_TOKEN = 4  # about right for GPT-2's BPE on English tweets; the plan needs a count before any tokenizer


def run_plan(cfg, config: GPTConfig, dtype: str, train_texts: list[str], device: torch.device,
             probe: bool = True) -> tuple[Plan, list[str], float]:
    """(the plan, the lines to print, the estimated seconds) of a training run with settings `cfg` (a TrainConfig)
    on `device`, from the model's shape and its training split (as text: no tokenizer needed yet)."""
    seq = cfg.max_len or min(256, config.n_positions)
    p = plan(config, cfg.batch_size, seq, dtype, cfg.lora_rank, cfg.lora_targets, cfg.base_dtype,
             cfg.activation_checkpointing)
    if cfg.keep_freed_memory:
        p.kept = KEPT_SHARE * p.total
    epochs = cfg.epochs  # or what --max-steps leaves of them (steps of batch x accumulation examples)
    if cfg.max_steps:
        epochs = min(epochs, cfg.max_steps * cfg.batch_size * cfg.grad_accum / max(len(train_texts), 1))
    tokens = epochs * sum(map(len, train_texts)) / CHARS_PER_TOKEN
    length = f"{cfg.max_steps} steps" if epochs < cfg.epochs else f"{cfg.epochs:g} epochs"
    rate = matmul_rate(device, dtype) if probe else float("nan")
    seconds = p.flops / (cfg.batch_size * seq) * tokens / (rate * EFFICIENCY[dtype])
    free = free_memory(device)
    took = (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400
            else f"{seconds / 3600:.1f} h")
    lines = [f"{p.line()} (free: {free / GIB:.1f} GiB); time: ~{took} for {length} "
             f"(~{tokens / 1e6:.2f}M tokens, {rate / 1e9:.0f} GFLOP/s matmuls in {dtype} on {device})"]
    if p.total > free:
        lines.append(f"this run needs ~{p.total / GIB:.1f} GiB and {device} has {free / GIB:.1f} GiB free. What fits: "
                     + ("; ".join(levers(config, cfg.batch_size, seq, dtype, free)) or "nothing on this device: a "
                        "smaller --model"))
    return p, lines, seconds


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep the memory a training step frees, for the next step to reuse. -> True if set.

    By default glibc serves every large tensor (from ~1-32 MB up) with a fresh mapping from the system and hands it
    back when the tensor is freed; the next step's tensor of the same size then costs a page fault and zeroing per
    4 KiB page, ~150,000 faults per step at the 124M shape. Served from the heap and never trimmed, those pages stay
    mapped: measured at 124M in bf16 (`bench/train_speed.py --levers keep_memory`), 1.01-1.10x the tokens/s in
    three runs for 1.05-1.08x the peak memory (freed pieces that do not fit the next request are kept too). Where
    the C library is not glibc, a warning says it is ignored, and False.
    """
    import ctypes
    import ctypes.util
    import warnings

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        warnings.warn("--keep-freed-memory needs glibc's allocator (Linux); ignored here", stacklevel=2)
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))

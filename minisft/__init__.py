"""minisft: supervised fine-tuning of GPT-2, from scratch, in plain PyTorch."""

import os

__version__ = "0.1.0"

# PyTorch's bf16 matmuls on CPU go through oneDNN, which compiles a kernel for every matrix shape it meets and
# keeps up to 1024 of them (two caches: oneDNN's primitives, and PyTorch's ideep layer above it). SFT batches
# change shape at every step (each length-grouped batch has its own length), so both caches grow for the whole
# run: at the 124M shape in bf16, 60 steps of batch 8 peak at 3,731 MiB with the defaults and 3,033 MiB with 16
# entries each, at the same speed within noise (python bench/cache_growth.py; a step reuses its few shapes).
# Known upstream: pytorch/pytorch#27971. Read when the caches are first used, so this must run before the first
# bf16 matmul; a value set by the user wins.
for _name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
    os.environ.setdefault(_name, "16")

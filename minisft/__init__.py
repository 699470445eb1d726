"""minisft: supervised fine-tuning of GPT-2, from scratch, in plain PyTorch."""

__version__ = "0.1.0"

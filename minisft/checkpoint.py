"""Checkpoints that survive a crash, and the state that makes a resumed run continue exactly.

A checkpoint is a folder `runs/<name>/checkpoints/step-0000500/` that is at once
  - a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json) that `transformers` loads as is,
  - our template.json (sampling must wrap prompts exactly as training did),
  - state.pt: what the next step needs that the weights don't say (optimizer moments, loss scaler, step,
    position in the data order, random number generator states).

Atomicity: the folder is written under a temporary name and renamed into place, then the run's `latest` pointer is
replaced (write + os.replace, atomic on POSIX). A process killed at any moment leaves either the old checkpoint
or the new one as `latest`, never half of one.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from minisft.files import atomic_write_text
from minisft.lora import ADAPTERS_FILE
from minisft.model import unwrap
from minisft.pretrained import save_model
from minisft.runs import POINTER
from minisft.templates import save_template

STEP_DIR = re.compile(r"^step-(\d{7})$")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, template: str, train_state: dict,
                    keep_last: int = 0, condition: dict | None = None, adapters: dict | None = None) -> Path:
    """Write checkpoints/step-<step>/ atomically, point `latest` at it, and prune old ones."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:07d}"
    tmp = ckpt_root / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # the leftovers of a save that was killed
    tmp.mkdir()
    save_model(unwrap(model), tmp)
    tokenizer.save(tmp)
    save_template(tmp, template, condition)
    if adapters is not None:  # a LoRA run: model.safetensors has the update merged in; resume needs A and B
        save_file(adapters, tmp / ADAPTERS_FILE)
    torch.save(train_state, tmp / "state.pt")
    if final.exists():  # saving the same step twice (e.g. a stop right after a scheduled save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(Path(run_dir) / POINTER, f"checkpoints/{final.name}\n")
    if keep_last > 0:
        prune(ckpt_root, keep_last, final)
    return final


def prune(ckpt_root: Path, keep_last: int, current: Path) -> None:
    steps = sorted(p for p in ckpt_root.iterdir() if STEP_DIR.match(p.name))
    for old in steps[:-keep_last]:
        if old != current:
            shutil.rmtree(old)


def load_train_state(folder: Path) -> dict:
    # weights_only: our state holds only tensors, numbers and strings, so nothing executable is unpickled.
    return torch.load(Path(folder) / "state.pt", map_location="cpu", weights_only=True)

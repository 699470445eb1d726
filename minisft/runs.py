"""Run folders: opening one for training (or resuming it), and finding the model to sample from: the newest run,
or the checkpoint a folder stands for.

A run folder (runs/<name>/) holds a text file `latest` naming its newest checkpoint ("checkpoints/step-0000500");
training replaces that file atomically after each save. So "the latest run" is the run whose `latest` pointer was
written last, and a run folder stands for the checkpoint its pointer names. A checkpoint folder, or any Hugging
Face GPT-2 folder (config.json + weights), stands for itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from minisft.config import TrainConfig
from minisft.distributed import shared

POINTER = "latest"
NO_RUN_HINT = "train one with python train.py"


def latest_run(runs_dir: str | Path = "runs") -> Path:
    """The run folder under `runs_dir` whose `latest` pointer is the newest (by modification time)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no run found: {runs_dir}/ does not exist ({NO_RUN_HINT})")
    runs = runs_in(runs_dir)
    if not runs:
        raise FileNotFoundError(f"no run found: no folder in {runs_dir}/ has a `{POINTER}` checkpoint pointer "
                                f"({NO_RUN_HINT})")
    return runs[0]


def checkpoint_folder(path: str | Path) -> Path:
    """A run folder -> the checkpoint its `latest` names; a checkpoint / Hugging Face folder -> itself."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is a file: pass a run folder or a checkpoint folder (with config.json)")
    pointer = path / POINTER
    if pointer.is_file():
        target = pointer.read_text().strip()
        if not target:
            raise ValueError(f"{pointer} is empty: it should name a checkpoint, e.g. checkpoints/step-0000500")
        folder = path / target
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{pointer} points at {folder}, which has no config.json: the run folder is "
                                    "damaged (was the checkpoint deleted?)")
        return folder
    if (path / "config.json").is_file():
        return path
    held = runs_in(path)
    if held:
        listed = "".join(f"\n  {run}" for run in held[:20])
        listed += f"\n  ... and {len(held) - 20} more" if len(held) > 20 else ""
        raise FileNotFoundError(f"{path} is a folder of {len(held)} run(s), not a run: pass one of them:{listed}")
    raise FileNotFoundError(f"{path} is neither a run folder (no `{POINTER}` file) nor a checkpoint folder "
                            "(no config.json)")


def runs_in(folder: Path) -> list[Path]:
    """The run folders directly inside `folder` (those with a `latest` pointer), newest first."""
    found = [p for p in Path(folder).iterdir() if p.is_dir() and (p / POINTER).is_file()]
    return sorted(found, key=lambda p: (p / POINTER).stat().st_mtime, reverse=True)


class RunError(ValueError):
    """A run folder that can't be used as asked (nothing to resume, or a name already taken)."""


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / POINTER
    if not pointer.exists():
        return None
    folder = Path(run_dir) / pointer.read_text().strip()
    if not (folder / "state.pt").exists():
        raise FileNotFoundError(f"{pointer} points at {folder}, which has no state.pt: the run folder is damaged")
    return folder


def open_run(cfg: TrainConfig, given: set[str]) -> tuple[TrainConfig, Path, Path | None]:
    """The run folder, the config to use, and the checkpoint to resume from (None for a new run)."""
    if cfg.resume:
        run_dir = Path(shared(str(latest_run(cfg.out) if cfg.resume == "latest" else cfg.resume)))
        saved = TrainConfig.load(run_dir / "run_config.json")
        # A resumed run keeps its own config; only these flags may change (e.g. train longer, another device).
        for name in given & {"max_steps", "epochs", "stop_after", "device", "wandb", "progress", "eval_every",
                             "save_every", "keep_last", "final_eval", "plan", "activation_checkpointing"}:
            setattr(saved, name, getattr(cfg, name))
        saved.resume = str(run_dir)
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise RunError(f"{run_dir} has no checkpoint to resume from")
        return saved, run_dir, ckpt
    # The timestamped default name is chosen by rank 0 alone: processes started a second apart must share a folder.
    levers = cfg.weights if cfg.condition == "none" else f"cond-{cfg.condition}" + (
        f"-{cfg.weights}" if cfg.weights != "none" else "")  # e.g. tiny-cond-auto-2026..., tiny-log-2026...
    name = shared(cfg.name or f"{Path(cfg.model or 'auto').name}-{levers}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(cfg.out) / name
    if (run_dir / POINTER).exists():
        raise RunError(f"{run_dir} already holds a run: pick another --name, or --resume {run_dir}")
    return cfg, run_dir, None

"""Where the numbers of a run go: always `metrics.jsonl` in the run folder, and Weights & Biases when wanted.

metrics.jsonl is one JSON object per line ({"step": 10, "train/loss": 3.2, ...}); `minisft.report` and a learner's
own pandas both read it. W&B gets the same numbers, plus the config and a table of sample tweets.
"""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path


def wandb_logged_in() -> bool:
    """True when an API key is configured (env var or ~/.netrc), without asking the network or the user."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class Tracker:
    def __init__(self, run_dir: Path, config: dict, wandb_mode: str = "auto", project: str = "minisft",
                 resume_id: str | None = None, enabled: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled  # only rank 0 writes anything under DDP
        self.wandb = None
        if not enabled or wandb_mode == "disabled":
            return
        if wandb_mode == "auto":
            wandb_mode = "online" if wandb_logged_in() else "offline"
        import wandb

        self.wandb = wandb.init(project=project, dir=str(run_dir), config=config, mode=wandb_mode,
                                name=Path(run_dir).name, id=resume_id, resume="allow" if resume_id else None)
        if wandb_mode == "offline":
            print(f"W&B is offline (not logged in): sync later with  wandb sync {run_dir}/wandb/offline-run-*")

    @property
    def wandb_id(self) -> str | None:
        return self.wandb.id if self.wandb is not None else None

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def log_samples(self, step: int, rows: list[dict]) -> None:
        """Sample tweets: appended to samples.jsonl, and a W&B table (one per evaluation)."""
        if not self.enabled or not rows:
            return
        with open(self.path.with_name("samples.jsonl"), "a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **row}, ensure_ascii=False) + "\n")
        if self.wandb is not None:
            import wandb

            columns = list(rows[0])
            table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
            self.wandb.log({"samples": table}, step=step)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a/b": 1}: nested numbers as the flat keys metrics.jsonl and W&B take."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)):
            out[prefix + k] = v
    return out

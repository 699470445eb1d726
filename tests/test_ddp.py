"""train.py under DistributedDataParallel, as torchrun starts it: two gloo processes on this CPU.

Each rank is a `python train.py` process with the environment torchrun would give it (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), so the test holds both pids and can signal one rank alone.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minisft.tweets.datagen import generate_records

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "tweets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in generate_records(240, seed=1)))
    return path


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args, cwd, world=2):
    port = free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def finish(procs, timeout=180):
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), outs
    return outs


def base(data_file, out, *extra):
    return ["--model", "tiny", "--data", str(data_file), "--out", str(out), "--batch-size", "4", "--tiny-vocab", "512",
            "--eval-every", "0", "--wandb", "disabled", "--no-progress", "--max-len", "96", "--final-eval", "0",
            "--save-every", "0", *extra]


def rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_file(Path(run_dir) / (Path(run_dir) / "latest").read_text().strip() / "model.safetensors")


def test_interrupted_and_resumed_with_dropout_equals_straight(data_file, tmp_path):
    args = base(data_file, tmp_path, "--dropout", "0.1", "--max-steps", "6")
    finish(start_ranks(args + ["--name", "straight"], tmp_path))
    finish(start_ranks(args + ["--name", "split", "--stop-after", "3"], tmp_path))
    state = torch.load(tmp_path / "split" / "checkpoints" / "step-0000003" / "state.pt", weights_only=True)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    finish(start_ranks(["--resume", str(tmp_path / "split"), "--wandb", "disabled", "--no-progress"], tmp_path))
    losses = lambda run: [(r["step"], r["train/loss"]) for r in rows(run) if "train/loss" in r]  # noqa: E731
    assert [s for s, _ in losses(tmp_path / "split")] == list(range(1, 7))
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")  # bit-identical, dropout and all
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # one run folder for both processes, though neither was given --name... (next test) and tokens counted once:
    for r in rows(tmp_path / "straight"):
        if "train/loss" in r:
            assert r["train/tokens_per_s"] == pytest.approx(r["train/target_tokens"] / r["train/step_s"], rel=1e-9)


def test_ranks_share_one_default_run_folder_and_a_resume_needs_as_many_processes(data_file, tmp_path):
    finish(start_ranks(base(data_file, tmp_path, "--max-steps", "2"), tmp_path))
    (run,) = [p for p in tmp_path.iterdir() if (p / "latest").exists()]  # rank 0 named it; rank 1 used it
    assert run.name.startswith("tiny-cond-auto-")  # the default levers in the name
    from minisft.training import main

    assert main(["--resume", str(run), "--max-steps", "3", "--wandb", "disabled", "--no-progress"]) == 1


def test_a_sigint_to_one_rank_stops_both_after_the_same_step_with_one_checkpoint(data_file, tmp_path):
    procs = start_ranks(base(data_file, tmp_path, "--max-steps", "100000", "--name", "sig"), tmp_path)
    metrics, deadline = tmp_path / "sig" / "metrics.jsonl", time.time() + 120
    while not (metrics.exists() and "train/loss" in metrics.read_text()):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "training did not start"
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGINT)  # rank 1 only: rank 0 learns of it through the agreed stop flag
    outs = finish(procs, timeout=120)
    steps = [int(out.split(f"[rank {r}] left the loop after step ")[1].split()[0]) for r, out in enumerate(outs)]
    assert steps[0] == steps[1] and "SIGINT" in outs[1] and "SIGINT" not in outs[0]
    assert [p.name for p in (tmp_path / "sig" / "checkpoints").iterdir()] == [f"step-{steps[0]:07d}"]
    assert (tmp_path / "sig" / "latest").read_text().strip() == f"checkpoints/step-{steps[0]:07d}"
    assert max(r["step"] for r in rows(tmp_path / "sig")) == steps[0]
    assert f"stopped at step {steps[0]}/100000" in outs[0]


def test_lora_under_ddp_trains_the_steps_of_one_process(data_file, tmp_path):
    """LoRA changes what trains, not the loop: 2 processes x batch 4 take the steps of 1 process x batch 8."""
    args = base(data_file, tmp_path, "--max-steps", "3", "--lora-rank", "4", "--lora-dropout", "0", "--dropout", "0")
    finish(start_ranks(args + ["--name", "two"], tmp_path))
    one = [a if a != "4" or args[i - 1] != "--batch-size" else "8" for i, a in enumerate(args)]
    finish(start_ranks(one + ["--name", "one"], tmp_path, world=1))
    losses = lambda run: [r["train/loss"] for r in rows(tmp_path / run) if "train/loss" in r]  # noqa: E731
    assert len(losses("two")) == 3 and losses("two") == pytest.approx(losses("one"), rel=1e-5)
    a, b = weights(tmp_path / "two"), weights(tmp_path / "one")  # the merged exports agree too
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

"""Several processes, one run: the few collective calls the training loop makes under DistributedDataParallel.

`torchrun --nproc_per_node N train.py ...` starts N copies of train.py with RANK / WORLD_SIZE set. Each builds the
same examples, takes its own share of every step, and DDP averages the gradients. Everything else a run decides
must also be decided once for all of them, or the processes drift apart:
  shared     a value chosen by rank 0 (the run folder's name), sent to every process
  agreed     a flag that is True everywhere once it is True anywhere (Ctrl-C reached one process: all stop)
  all_ranks  every process's value, gathered (each one's random state, saved so resume is exact)
Without torchrun each of these is the identity, so the loop reads the same either way.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup_distributed():
    """Under `torchrun`, join the process group (gloo on CPU, nccl on CUDA). Returns (rank, world, local_rank)."""
    if "RANK" not in os.environ:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def shared(value):
    """Under DDP, rank 0's `value` on every process (a name, a path: decided once, not once per process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agreed(flag: bool, device) -> bool:
    """Under DDP, True on every process as soon as it is True on one (an all-reduce of the flag, MAX)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_ranks(value) -> list:
    """Every process's `value`, in rank order (a list of one without DDP)."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values

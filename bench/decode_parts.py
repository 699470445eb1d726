"""Where a decoding step's time goes at batch 1. python bench/decode_parts.py [--shape 124m]

Decoding one token reads every weight once, so its speed limit is how fast the weights stream out of memory.
This script measures, in one process:
  1. the machine: a bf16 read (sum of a tensor as large as the weights) and a copy, in GB/s;
  2. the linear layers alone, one call per weight matrix in the model's order (each matrix read once, as in a
     step), for each layout: plain nn.Linear on bf16 weights, prepacked for oneDNN (fast_decode.PrepackedLinear),
     weight-only int8 (sample_speed.Int8WeightOnly): ms per token and the GB/s of weights they stream;
  3. one whole step of the prepacked model (the forward pass of one token with its KV cache), and the sampler's
     pick of the next token (choose_next: top-k 50, top-p 0.9), in ms.
Every part is timed once per round, in turn, for --repeats rounds; each figure is its median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from peaks import copy_bandwidth, timed  # noqa: E402
from sample_speed import SHAPES, Int8WeightOnly  # noqa: E402

from minisft import fast_decode  # noqa: E402
from minisft.model import GPT, GPTConfig, KVCache  # noqa: E402
from minisft.sampling import choose_next, for_inference  # noqa: E402


def interleaved_ms(parts: dict, rounds: int) -> dict[str, float]:
    """{name: median ms} of each part, timed once per round, in turn (a slow minute slows every part alike)."""
    for fn in parts.values():
        fn()  # warm-up
    times = {name: [] for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            times[name].append(timed(fn) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def linears(model) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="124m", choices=sorted(SHAPES))
    p.add_argument("--repeats", type=int, default=15, help="rounds")
    args = p.parse_args(argv)
    n_layer, n_head, n_embd, n_positions, vocab = SHAPES[args.shape]
    torch.manual_seed(0)
    plain = for_inference(GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                                        vocab_size=vocab)), torch.bfloat16, fast=False)
    layers = linears(plain)  # the order of a step: each block's four matrices, then the head
    weight_bytes = sum(m.weight.numel() * 2 for m in layers)
    big = torch.empty(weight_bytes // 2, dtype=torch.bfloat16).normal_()
    inputs = {n: torch.randn(1, n, dtype=torch.bfloat16) for n in {m.in_features for m in layers}}
    variants = {"plain bf16 nn.Linear": (layers, 2), "int8 weight-only": ([Int8WeightOnly(m) for m in layers], 1)}
    if fast_decode.can_prepack(layers[0].weight):
        variants["prepacked bf16"] = ([fast_decode.PrepackedLinear(m) for m in layers], 2)
    model = for_inference(plain, torch.bfloat16)  # prepacked where the CPU allows
    cache = KVCache(model.config, 1, 64, dtype=torch.bfloat16)
    token, pos = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)

    def one_step():
        cache.pos = 16  # the 17th position, every time: the same step
        return model(token, pos + 16, None, cache)

    with torch.inference_mode():
        logits = one_step()[:, -1]
        g = torch.Generator().manual_seed(0)
        parts = {"read": big.sum, "step": one_step, "pick": lambda: choose_next(logits, 1.0, 50, 0.9, g)}
        for name, (mods, _) in variants.items():
            parts[name] = lambda mods=mods: [m(inputs[m.in_features]) for m in mods]
        ms = interleaved_ms(parts, args.repeats)
    print(f"{args.shape}: {len(layers)} weight matrices, {weight_bytes / 1e6:.0f} MB in bf16; bf16 read "
          f"{weight_bytes / ms['read'] / 1e6:.1f} GB/s, copy {copy_bandwidth():.1f} GB/s (read + write), "
          f"{torch.get_num_threads()} threads; medians of {args.repeats} interleaved rounds")
    for name, (_, bytes_per_weight) in variants.items():
        print(f"  linears, {name:22} {ms[name]:7.2f} ms/token  "
              f"{weight_bytes / 2 * bytes_per_weight / ms[name] / 1e6:5.1f} GB/s of weights")
    print(f"  one step of the model (prepacked): {ms['step']:.2f} ms; choose_next: {ms['pick']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

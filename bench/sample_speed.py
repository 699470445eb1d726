"""How fast does minisft sample, next to transformers' generate? python bench/sample_speed.py [--shapes tiny,124m]

Both sides get the same random-weight checkpoint (written by transformers, read by our loader), the same prompts,
the same settings (top-k 50, top-p 0.9, temperature 1, key/value cache on) and generate exactly --new-tokens
tokens per row (end-of-text disabled on both sides). Reported: new tokens per second, end to end (prefill
included). Every variant of a (shape, batch) cell runs once per round, in turn, for --repeats rounds; each ratio
is taken within a round (so a slow minute slows both sides of it) and printed as its median [range] over rounds.

Decoding one token reads every weight once, so at batch 1 the speed limit is the copy bandwidth / the bytes of
the weights (measured in the same run, with the matmul peaks: bench/peaks.py); each variant's share of its own
limit is printed. --levers adds variants of our bf16 path, to see what each lever of minisft/fast_decode.py pays:
  plain     nn.Linear on bf16 weights (sampling.for_inference(..., fast=False): the teaching path)
  int8      weight-only int8 (torch._weight_int8pack_mm, PyTorch's own kernel): measured here, not kept
  compile   torch.compile of the forward pass with weight freezing (inductor prepacks the weights itself)
transformers is needed here (as in the tests); minisft itself never imports it.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from peaks import copy_bandwidth, machine_line, matmul_peaks, spread, timed  # noqa: E402

from minisft.pretrained import load_model  # noqa: E402
from minisft.sampling import for_inference, generate, inference_dtype  # noqa: E402

SHAPES = {  # (n_layer, n_head, n_embd, n_positions, vocab_size)
    "tiny": (4, 4, 128, 256, 4096),  # model.tiny_config with a full 4096-token vocabulary
    "124m": (12, 12, 768, 1024, 50257),  # GPT-2 small
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BYTES = {"fp32": 4, "bf16": 2, "int8": 1}  # bytes per weight each variant reads per token
LEVERS = ("plain", "int8", "compile")


def bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    return copy_bandwidth(mib, repeats)


_timed = timed


def build(shape: str, folder: Path):
    """A random GPT2LMHeadModel saved by transformers, and the same file loaded by minisft."""
    from transformers import GPT2Config, GPT2LMHeadModel

    n_layer, n_head, n_embd, n_positions, vocab = SHAPES[shape]
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                                    vocab_size=vocab, bos_token_id=0, eos_token_id=0)).eval()
    hf.save_pretrained(folder)
    hf.generation_config.eos_token_id = None  # never stop early: both sides generate exactly N tokens
    hf.generation_config.pad_token_id = 0
    return hf, load_model(str(folder))


# ------------------------------------------------------------------------------------------ the levers left out

class Int8WeightOnly(torch.nn.Module):
    """A linear layer with int8 weights (one scale per output row, symmetric) and bf16 activations.

    torch._weight_int8pack_mm reads the int8 weight and scales each output: half the bytes of bf16. Measured as a
    lever (--levers int8), not kept in minisft: see bench/README.md.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127
        self.q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        self.scale = scale.to(torch.bfloat16)
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)

    def forward(self, x):
        y = torch._weight_int8pack_mm(x.reshape(-1, x.size(-1)), self.q, self.scale)
        y = y if self.bias is None else y + self.bias
        return y.view(*x.shape[:-1], -1)


def int8_model(model):
    """A bf16 copy of `model` whose linear layers (the head included) are Int8WeightOnly."""
    model = for_inference(model, torch.bfloat16, fast=False)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Int8WeightOnly(child))
    return model


def compiled_model(model):
    """A bf16 copy of `model` whose forward pass is torch.compile'd with freezing (weights become constants that
    inductor prepacks for oneDNN). The one-token step and the prefill compile on first use."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    model = for_inference(model, torch.bfloat16, fast=False)
    model.forward = torch.compile(model.forward, dynamic=True)
    model.hidden_states = torch.compile(model.hidden_states, dynamic=True)
    return model


# -------------------------------------------------------------------------------------------------- measuring

def run_pair(hf, ours, batch: int, prompt_len: int, new: int, repeats: int) -> tuple[float, float]:
    """(our tokens/s, transformers' tokens/s), medians of `repeats` runs taken alternately."""
    runs = time_rounds({"ours": sampler(ours), "hf": hf_sampler(hf)}, batch, prompt_len, new, repeats,
                       hf.config.vocab_size)
    return statistics.median(runs["ours"]), statistics.median(runs["hf"])


def sampler(model):
    def run(prompts, ids, new):
        out = generate(model, prompts, new, eos_id=None, seed=0, top_k=50, top_p=0.9, temperature=1.0)
        assert all(len(o) == new for o in out)
    return run


def hf_sampler(hf):
    def run(prompts, ids, new):
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=new,
                              use_cache=True, top_k=50, top_p=0.9, temperature=1.0)
        assert out.shape == (ids.size(0), ids.size(1) + new), out.shape
    return run


def time_rounds(variants: dict, batch: int, prompt_len: int, new: int, repeats: int,
                vocab: int) -> dict[str, list[float]]:
    """{variant: [tokens/s of each round]}: every variant once per round, in turn, after one warm-up call each."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (batch, prompt_len), generator=g)
    prompts = ids.tolist()
    for run in variants.values():  # warm-up: first calls allocate, pick kernels (and compile)
        run(prompts, ids, new)
    rates = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            rates[name].append(batch * new / timed(lambda: run(prompts, ids, new)))
    return rates


def ratios(rates: dict, a: str, b: str) -> list[float]:
    return [x / y for x, y in zip(rates[a], rates[b])]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="tiny,124m", help="comma list of: " + ", ".join(SHAPES))
    p.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per row")
    p.add_argument("--prompt-len", type=int, default=16, help="prompt tokens per row")
    p.add_argument("--repeats", type=int, default=3, help="rounds; every figure is the median [range] over them")
    p.add_argument("--levers", default="", help="comma list of extra bf16 variants: " + ", ".join(LEVERS))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write every round's tokens/s here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    levers = [x for x in args.levers.split(",") if x]
    unknown = set(levers) - set(LEVERS)
    if unknown:
        p.error(f"--levers: unknown {sorted(unknown)}; choose from {', '.join(LEVERS)}")

    import transformers

    peaks, bw = matmul_peaks(), copy_bandwidth()
    print(machine_line(peaks, bw) + f", transformers {transformers.__version__}")
    print(f"{args.repeats} rounds; new tokens/s as median [range]; 'limit' = the variant's share of copy bandwidth /"
          f" weight bytes (batch 1: the most a token can take)\n")
    results = {"machine": {"matmul_gflops": peaks, "copy_gbs": bw}, "cells": []}
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            hf32, ours32 = build(shape, Path(tmp))
            n = ours32.num_params()
            default = "bf16" if inference_dtype(torch.device("cpu"), n) == torch.bfloat16 else "fp32"
            variants = {"ours fp32": sampler(for_inference(ours32, torch.float32)), "generate fp32": hf_sampler(hf32),
                        "ours bf16": sampler(for_inference(ours32, torch.bfloat16)),
                        "generate bf16": hf_sampler(copy.deepcopy(hf32).to(torch.bfloat16))}
            makers = {"plain": lambda: for_inference(ours32, torch.bfloat16, fast=False),
                      "int8": lambda: int8_model(ours32), "compile": lambda: compiled_model(ours32)}
            variants.update({f"ours bf16 {lever}": sampler(makers[lever]()) for lever in levers})
            for batch in (int(b) for b in args.batches.split(",")):
                rates = time_rounds(variants, batch, args.prompt_len, args.new_tokens, args.repeats,
                                    hf32.config.vocab_size)
                results["cells"].append({"shape": shape, "batch": batch, "params": n, "default": default,
                                         "tokens_per_s": rates})
                print_cell(shape, batch, n, default, rates, bw)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def print_cell(shape, batch, n_params, default, rates, bw):
    print(f"{shape} batch {batch}:")
    for name, r in rates.items():
        dtype = "int8" if name.endswith("int8") else name.split()[1]
        limit = bw * 1e9 / (n_params * BYTES[dtype]) * batch
        print(f"  {name:22} {spread(r, '{:.1f}'):>24} tok/s   {statistics.median(r) / limit:5.1%} of limit")
    print(f"  ratios: ours/generate fp32 {spread(ratios(rates, 'ours fp32', 'generate fp32'), unit='x')}, bf16 "
          f"{spread(ratios(rates, 'ours bf16', 'generate bf16'), unit='x')}; our default ({default}) vs generate "
          f"fp32 {spread(ratios(rates, f'ours {default}', 'generate fp32'), unit='x')}")
    for name in rates:
        if name.startswith("ours bf16 "):
            print(f"  lever {name[10:]}: {spread(ratios(rates, name, 'ours bf16'), unit='x')} the prepacked bf16 path")
    print(flush=True)


def _count_124m() -> int:
    n_layer, _, C, n_pos, V = SHAPES["124m"]
    per_layer = 12 * C * C + 13 * C  # c_attn 3C^2+3C, c_proj C^2+C, c_fc 4C^2+4C, mlp c_proj 4C^2+C, 2 LN 4C
    return V * C + n_pos * C + n_layer * per_layer + 2 * C  # wte (= lm_head, tied) + wpe + blocks + ln_f


if __name__ == "__main__":
    sys.exit(main())

"""How fast does minisft sample, next to transformers' generate? python bench/sample_speed.py [--shapes tiny,124m]

Both sides get the same random-weight checkpoint (written by transformers, read by our loader), the same prompt,
the same settings (top-k 50, top-p 0.9, temperature 1, key/value cache on) and generate exactly --new-tokens
tokens (end-of-text disabled on both sides). Reported: new tokens per second, end to end (prefill included), the
best of --repeats runs taken in turn (ours, theirs, ours, ...) so that a noisy machine hurts both alike.

Decoding one token reads every weight once, so at batch 1 the speed limit is memory bandwidth / bytes of weights;
the script measures the bandwidth (a large tensor copy) and prints that limit for the 124M model in fp32.
transformers is needed here (as in the tests); minisft itself never imports it.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minisft.pretrained import load_model  # noqa: E402
from minisft.sampling import for_inference, generate, inference_dtype  # noqa: E402

SHAPES = {  # (n_layer, n_head, n_embd, n_positions, vocab_size)
    "tiny": (4, 4, 128, 256, 4096),  # model.tiny_config with a full 4096-token vocabulary
    "124m": (12, 12, 768, 1024, 50257),  # GPT-2 small
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    """GB/s moved by copying a large tensor (bytes read + bytes written), best of `repeats`."""
    src = torch.empty(mib * 2**20 // 4).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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


def run_pair(hf, ours, batch: int, prompt_len: int, new: int, repeats: int) -> tuple[float, float]:
    """(our tokens/s, transformers' tokens/s), best of `repeats`, taken alternately."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, hf.config.vocab_size, (batch, prompt_len), generator=g)
    prompts = ids.tolist()
    settings = dict(top_k=50, top_p=0.9, temperature=1.0)

    def mine():
        out = generate(ours, prompts, new, eos_id=None, seed=0, **settings)
        assert all(len(o) == new for o in out)

    def theirs():
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=new,
                              use_cache=True, **settings)
        assert out.shape == (batch, prompt_len + new), out.shape

    mine(), theirs()  # warm-up: first calls allocate and pick kernels
    t_mine, t_theirs = float("inf"), float("inf")
    for _ in range(repeats):
        t_mine = min(t_mine, _timed(mine))
        t_theirs = min(t_theirs, _timed(theirs))
    return batch * new / t_mine, batch * new / t_theirs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="tiny,124m", help="comma list of: " + ", ".join(SHAPES))
    p.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of: " + ", ".join(DTYPES))
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per row")
    p.add_argument("--prompt-len", type=int, default=16, help="prompt tokens per row")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per side (the best one counts)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    bw = bandwidth_gbs()
    weights_124m = _count_124m()
    print(f"memory bandwidth (512 MiB copy, read + write): {bw:.1f} GB/s")
    print(f"batch-1 limit for 124M fp32 = bandwidth / weight bytes = {bw:.1f} GB/s / "
          f"{weights_124m * 4 / 1e9:.3f} GB = {bw * 1e9 / (weights_124m * 4):.1f} tokens/s")
    print()
    print(f"{'shape':6} {'dtype':5} {'batch':>5} {'minisft tok/s':>14} {'HF generate tok/s':>18} {'ratio':>6}")
    results, defaults = {}, {}
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            hf32, ours32 = build(shape, Path(tmp))
            defaults[shape] = inference_dtype(torch.device("cpu"), ours32.num_params())
            for dtype_name in args.dtypes.split(","):
                dtype = DTYPES[dtype_name]
                # cast copies, once, outside the timing (nn.Module.to would cast hf32 itself)
                hf, ours = copy.deepcopy(hf32).to(dtype), for_inference(ours32, dtype)
                for batch in (int(b) for b in args.batches.split(",")):
                    mine, theirs = run_pair(hf, ours, batch, args.prompt_len, args.new_tokens, args.repeats)
                    results[shape, dtype, batch] = mine, theirs
                    print(f"{shape:6} {dtype_name:5} {batch:5d} {mine:14.1f} {theirs:18.1f} {mine / theirs:5.2f}x",
                          flush=True)
    print("\nour default precision (sample.py --dtype auto) vs transformers' generate in its default fp32:")
    for (shape, dtype, batch), (mine, _) in results.items():
        hf_fp32 = results.get((shape, torch.float32, batch))
        if dtype == defaults[shape] and hf_fp32:
            name = next(k for k, v in DTYPES.items() if v == dtype)
            print(f"  {shape:5} batch {batch}: {name} {mine:.1f} tok/s = {mine / hf_fp32[1]:.2f}x")
    return 0


def _count_124m() -> int:
    n_layer, _, C, n_pos, V = SHAPES["124m"]
    per_layer = 12 * C * C + 13 * C  # c_attn 3C^2+3C, c_proj C^2+C, c_fc 4C^2+4C, mlp c_proj 4C^2+C, 2 LN 4C
    return V * C + n_pos * C + n_layer * per_layer + 2 * C  # wte (= lm_head, tied) + wpe + blocks + ln_f


if __name__ == "__main__":
    sys.exit(main())

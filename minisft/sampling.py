"""Sampling: from a trained model to tweets, one token at a time.

A language model only ever scores the NEXT token. Generation is a loop: score, pick one token, append it, repeat
until the model writes <|endoftext|> (the token SFT taught it to emit after every response) or a budget runs out.
How we pick is the whole art, in four small steps applied to the last position's logits, in this order:

  repetition penalty   push down tokens the row has already used (prompt included): fewer loops
  temperature          logits / T: T < 1 sharpens the distribution, T > 1 flattens it, T = 0 means greedy (argmax)
  top-k                keep the k highest-scoring tokens
  top-p (nucleus)      keep the smallest set of top tokens whose probability adds up to p

Temperature comes before the filters on purpose: top-p measures probability mass, and that mass depends on T.

Speed: with a key/value cache, each new token costs one forward pass over ONE position, not over the whole
sequence. The prompt goes through once (the "prefill"), then every step feeds only the token just chosen; the
keys and values of everything before it are read from a preallocated KVCache (see model.py).

Batches mix prompts of different lengths by LEFT padding: every row's last prompt token sits in the same column, so
one forward pass gives every row its next-token logits at position -1. Pads must be invisible: an attention mask
hides pad keys, and per-row position_ids start each prompt at 0 as if the pads were not there.
"""

from __future__ import annotations

import copy as _copy
import warnings

import torch

from minisft import fast_decode
from minisft.model import GPT, KVCache, causal_mask, unwrap
from minisft.precision import BF16_MIN_PARAMS, cpu_has_bf16


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the context leaves room for and lost its first tokens."""


# ------------------------------------------------------------------------------------------ the four logit steps

def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al., 2019): seen tokens get positive logits divided, negative ones multiplied.

    logits [B, V]; seen [B, V] bool. Either way the seen token's score drops (for penalty > 1) and so does its
    probability. penalty 1.0 changes nothing.
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): T < 1 sharpens, T > 1 flattens. T = 0 (greedy) is handled by the caller, not here."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 here (0 means greedy: take the argmax), got {temperature}")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits of each row, set the rest to -inf. k = 0 (or >= V) keeps everything."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth_best = logits.topk(k, dim=-1).values[..., -1:]  # [B, 1]
    return logits.masked_fill(logits < kth_best, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al., 2019): keep the fewest top tokens whose probabilities sum to >= p.

    A token is kept when the mass of the tokens ranked strictly above it is still below p, so the token that
    crosses p is kept too, and the top token (nothing above it: mass 0) always survives, however small p is.
    p = 1 keeps everything.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs  # [B, V] in sorted order; 0 for the top token
    drop_sorted = mass_above >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the logits to sample from (softmax them for the probabilities)."""
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


def choose_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """[B, V] logits -> [B] token ids: the argmax when temperature is 0, else a draw from the filtered distribution."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    candidates = None
    if 0 < top_k < logits.size(-1):
        # Only the k best can survive top-k, so continue with those alone: top-p's sort, the softmax and the draw
        # then cost [B, k] instead of [B, V] (k = 50 vs V = 50257). Same distribution as top_k_filter + sampling.
        logits, candidates = logits.topk(top_k, dim=-1)  # [B, k] each, best first
    probs = filter_logits(logits, temperature, 0, top_p).softmax(dim=-1)
    choice = torch.multinomial(probs, num_samples=1, generator=generator)  # [B, 1]
    if candidates is not None:
        choice = candidates.gather(-1, choice)  # position among the k -> token id
    return choice.squeeze(1)


# ------------------------------------------------------------------------------------------------------ helpers

class SettingError(ValueError):
    """A sampling setting out of its range: `name` is the setting (sample.py shows it as --name), `rule` the range."""

    def __init__(self, name: str, rule: str):
        super().__init__(f"{name} {rule}")
        self.name, self.rule = name, rule


def check_settings(max_new_tokens: int, temperature: float, top_k: int, top_p: float, repetition_penalty: float):
    if max_new_tokens < 0:
        raise SettingError("max_new_tokens", f"must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise SettingError("temperature", f"must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise SettingError("top_k", f"must be >= 0 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise SettingError("top_p", f"must be in (0, 1] (1 = off), got {top_p}")
    if repetition_penalty <= 0:
        raise SettingError("repetition_penalty", f"must be > 0 (1 = off), got {repetition_penalty}")


def fit_prompts(prompts: list[list[int]], n_positions: int, max_new_tokens: int,
                names: list[str] | None = None) -> list[list[int]]:
    """Cut prompts longer than the room the context leaves (n_positions - max_new_tokens) from the LEFT.

    The end of a prompt matters most (the instruction's last words and the template's cue), so the start goes,
    as in training (data.encode_example). Each cut raises a PromptTruncatedWarning naming the row (names[i], or
    "prompt i").
    """
    room = n_positions - max_new_tokens
    if room < 1:
        raise SettingError("max_new_tokens", f"{max_new_tokens} leaves no room for a prompt in a context of "
                                             f"{n_positions} positions")
    fitted = []
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: the model needs at least one token to continue "
                             "(for an unconditional sample, start from [eos_id])")
        if len(p) > room:
            name = names[i] if names else f"prompt {i}"
            warnings.warn(f"{name} has {len(p)} tokens; only its last {room} fit (context {n_positions} - "
                          f"max_new_tokens {max_new_tokens}): its start was cut", PromptTruncatedWarning,
                          stacklevel=3)
            p = p[-room:]
        fitted.append(list(p))
    return fitted


def for_inference(model: GPT, dtype: torch.dtype | None = None, copy: bool = True, fast: bool = True) -> GPT:
    """The model made ready for decoding: eval mode, weights in `dtype`, laid out for fast decoding.

    copy=True (the default) leaves `model` alone and works on a copy (lm_head stays tied to wte); copy=False
    changes `model` itself, for a caller that owns it (sample.py), with no second copy in memory. With dtype None
    and copy=True the model is returned untouched.

    Why a cast (and not autocast): decoding one token reads every weight once, so it is bound by memory traffic,
    and bf16 weights are half the bytes. Measured on a 2-core CPU (bench/sample_speed.py), bf16 weights decode
    faster than fp32, and autocast slower than fp32 (it re-casts every weight at every step).

    fast=True: on CPU, each weight is also laid out the way a one-row product reads it fastest (fast_decode.py:
    fp32 matrices stored transposed, bf16 matrices prepacked for oneDNN). Same logits; fast=False keeps plain
    nn.Linear layers, the path to read.
    """
    model = unwrap(model)  # torch.compile's wrapper adds nothing to a loop of one-token steps
    if copy and dtype is None:
        return model
    if fast_decode.is_prepacked(model) and dtype not in (None, torch.bfloat16):
        raise ValueError(f"this model is already prepared for bf16 decoding (fast_decode.prepack): it cannot be "
                         f"cast to {dtype}; prepare the original model instead")
    if copy:
        model = _copy.deepcopy(model)  # deepcopy keeps lm_head tied to wte
    model = model.to(dtype).eval() if dtype is not None else model.eval()
    weight = model.transformer.wte.weight
    if fast and weight.device.type == "cpu" and isinstance(model.lm_head, torch.nn.Linear):
        if weight.dtype == torch.float32:
            fast_decode.transpose_for_matvec(model)
        elif fast_decode.can_prepack(weight):
            fast_decode.prepack(model)
    return model


def inference_dtype(device: torch.device, n_params: int) -> torch.dtype:
    """The default precision for sampling a model of `n_params` parameters on `device`.

    GPUs: bf16 where they have it (Ampere and newer). CPUs: bf16 when they compute in it natively (AVX512-BF16 or
    AMX) AND the model is big enough for memory traffic to be the limit (bf16 halves it); a small model's weights
    stay in cache, and there bf16's conversions only cost (measured: tiny shape 760 vs 960 tokens/s). Elsewhere
    fp32: emulated bf16 is slower than fp32.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and n_params >= BF16_MIN_PARAMS and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths -> idx [B, L] with pads on the LEFT, and each row's pad count [B]."""
    L = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        idx[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
    n_pad = torch.tensor([L - len(p) for p in prompts])
    return idx.to(device), n_pad.to(device)


def padding_masks(n_pad: torch.Tensor, L: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention masks for left-padded rows (True = may attend). n_pad [B]: each row's pad count.

    key_ok [B, 1, 1, total]: False on a row's pad columns. A decoding step with S keys uses key_ok[..., :S].
    prefill [B, 1, L, L]: causal AND not a pad key. A pad query would then see no key at all, and an all-False row
    makes some SDPA kernels return NaN (which would reach real rows through the next layer's keys), so every
    position may also see itself. Pad positions' outputs are never used.
    """
    device = n_pad.device
    key_ok = (torch.arange(total, device=device) >= n_pad[:, None])[:, None, None, :]
    itself = torch.eye(L, dtype=torch.bool, device=device)
    prefill = (causal_mask(L, L, device) & key_ok[..., :L]) | itself
    return prefill, key_ok


# ---------------------------------------------------------------------------------------------------- the loop

@torch.inference_mode()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, repetition_penalty: float = 1.0, eos_id: int | None = None, seed: int | None = None,
             dtype: torch.dtype | None = None, generator: torch.Generator | None = None) -> list[list[int]]:
    """Continue each prompt (a list of token ids); return each row's NEW tokens, without the end-of-text token.

    eos_id: a row stops at its own first eos_id (None: every row runs max_new_tokens). So a row finished exactly
        when it returns fewer than max_new_tokens tokens.
    seed: makes the draw reproducible (a private torch.Generator; the global RNG is left alone). Or pass
        `generator` to continue one stream over several calls. Greedy (temperature 0) ignores both.
    dtype: run in this precision (on a cast copy of the model, see for_inference); None = the model as is.
    A prompt longer than n_positions - max_new_tokens is cut from the left with a PromptTruncatedWarning.
    """
    check_settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty)
    if not prompts:
        return []
    model = for_inference(model, dtype)
    prompts = fit_prompts(prompts, model.config.n_positions, max_new_tokens)
    if max_new_tokens == 0:
        return [[] for _ in prompts]
    was_training = model.training
    model.eval()  # no dropout while sampling
    try:
        out = _decode(model, prompts, max_new_tokens, temperature, top_k, top_p, repetition_penalty, eos_id,
                      _make_generator(seed, generator, model))
    finally:
        model.train(was_training)
    rows = []
    for row in out.tolist():
        if eos_id is not None and eos_id in row:
            row = row[:row.index(eos_id)]  # the end token, and the padding a finished row kept producing, go
        rows.append(row)
    return rows


def _make_generator(seed, generator, model) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator(device=model.transformer.wte.weight.device)
    if seed is None:
        g.seed()  # fresh entropy, still without touching the global RNG
    else:
        g.manual_seed(seed)
    return g


def _decode(model: GPT, prompts, max_new_tokens, temperature, top_k, top_p, penalty, eos_id, generator):
    """The cached decoding loop: one prefill of every prompt token, then one position per step. -> [B, N] ids."""
    device = model.transformer.wte.weight.device
    pad_id = eos_id if eos_id is not None else 0  # any id works: pads are masked out and never returned
    idx, n_pad = left_pad(prompts, pad_id, device)
    B, L = idx.shape
    total = L + max_new_tokens - 1  # the last new token is returned, never fed back
    cache = KVCache(model.config, B, total, device=device, dtype=model.transformer.wte.weight.dtype)

    # Positions: each row counts from 0 at its first REAL token, so a padded prompt gets the same position
    # embeddings as it would alone. Pads get position 0 (they are never attended to).
    pos = (torch.arange(L, device=device) - n_pad[:, None]).clamp(min=0)  # [B, L]
    next_pos = (L - n_pad)[:, None].clone()  # [B, 1]: where each row's next token goes; += 1 every step

    # Masks, built ONCE (see padding_masks); a decoding step slices key_ok's first S columns, a view. Without
    # padding no mask is passed at all, and SDPA takes its fast causal / unmasked path.
    padded = bool(n_pad.any())
    prefill_mask, key_ok = padding_masks(n_pad, L, total) if padded else (None, None)

    seen = None
    if penalty != 1.0:  # [B, V]: which tokens each row has used so far (pads excluded)
        seen = torch.zeros(B, model.config.vocab_size, dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            seen[i, torch.tensor(p, device=device)] = True

    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    # Prefill: the whole prompt in one pass, but only the last position's logits are needed (lm_head over all L
    # positions would be an L x V matmul thrown away).
    hidden = model.hidden_states(idx, pos, prefill_mask, cache)[:, -1]  # [B, C]
    logits = model.lm_head(hidden)  # [B, V]
    for step in range(max_new_tokens):
        if seen is not None:
            logits = apply_repetition_penalty(logits, seen, penalty)
        next_id = choose_next(logits, temperature, top_k, top_p, generator)  # [B]
        if eos_id is not None:
            next_id.masked_fill_(finished, pad_id)  # a finished row keeps running, writing pads we never return
            finished |= next_id == eos_id
        out[:, step] = next_id
        if step == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
            break
        if seen is not None:
            seen.scatter_(1, next_id[:, None], True)
        mask = key_ok[..., :cache.pos + 1] if padded else None  # [B, 1, 1, S]
        logits = model(next_id[:, None], next_pos, mask, cache)[:, -1]  # [B, V]
        next_pos += 1
    return out

"""Sampling: each mechanic of minisft/sampling.py pinned by a property that fails if it breaks."""

import copy
import math

import pytest
import torch
import torch.nn as nn

import minisft.sampling as S
from minisft import fast_decode
from minisft.model import GPT, GPTConfig

PROMPTS = [[1, 2, 3, 4, 5, 6, 7], [7, 8], [9], [3, 4, 5, 11]]  # different lengths: left padding in one batch


@pytest.fixture(scope="module")
def model():
    """A small GPT with large random weights and an untied head, so greedy outputs vary from token to token."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50, eos_token_id=0))
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.normal_(1.0 if ".ln_" in name and name.endswith("weight") else 0.0, 0.3)
    m.lm_head.weight = nn.Parameter(torch.randn(50, 32))
    return m.eval()


def record_logits(monkeypatch):
    """Wrap choose_next so the logits it is given (one [B, V] tensor per step) are kept."""
    seen, original = [], S.choose_next

    def spy(logits, *args):
        seen.append(logits.clone())
        return original(logits, *args)

    monkeypatch.setattr(S, "choose_next", spy)
    return seen


# ------------------------------------------------------------------------------------------ the cache is exact

def test_cached_logits_equal_full_recompute_at_every_step(model, monkeypatch):
    steps = record_logits(monkeypatch)
    outs = S.generate(model, PROMPTS, max_new_tokens=12, temperature=0)
    assert len(steps) == 12
    with torch.no_grad():
        for row, (prompt, out) in enumerate(zip(PROMPTS, outs)):
            for t, logits in enumerate(steps):
                # each row alone, unpadded, no cache: the whole sequence so far in one plain causal pass
                full = model(torch.tensor([prompt + out[:t]]))[0, -1]
                assert (logits[row] - full).abs().max() <= 1e-4, (row, t)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random GPT2LMHeadModel saved by transformers, with weights large enough that greedy text varies."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=100,
                                    bos_token_id=0, eos_token_id=0))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.normal_(1.0, 0.3)
            else:
                p.normal_(0.0, 0.1 if "wte" in name else 0.5)
    folder = tmp_path_factory.mktemp("hf_random")
    hf.save_pretrained(folder)
    return folder


def test_greedy_matches_transformers_generate(hf_folder):
    from transformers import GPT2LMHeadModel

    from minisft.pretrained import load_model

    ours = load_model(str(hf_folder))  # transformers' file, read by our loader
    hf = GPT2LMHeadModel.from_pretrained(hf_folder).eval()
    prompts = [[5, 17, 42, 8], [3], list(range(10, 40))]
    for prompt in prompts:
        ids = torch.tensor([prompt])
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24,
                               min_new_tokens=24, eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
        got = S.generate(ours, [prompt], max_new_tokens=24, temperature=0)[0]
        assert got == expected
        assert len(set(got)) > 3  # a model stuck on one token would make this comparison weak
    # and as one left-padded batch (transformers derives positions from its attention mask, as we do)
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    attn = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    expected = hf.generate(ids, attention_mask=attn, do_sample=False, max_new_tokens=24, min_new_tokens=24,
                           eos_token_id=None, pad_token_id=0)[:, L:].tolist()
    assert S.generate(ours, prompts, max_new_tokens=24, temperature=0) == expected


def test_batched_rows_of_different_lengths_equal_one_at_a_time(model):
    batched = S.generate(model, PROMPTS, max_new_tokens=15, temperature=0)
    alone = [S.generate(model, [p], max_new_tokens=15, temperature=0)[0] for p in PROMPTS]
    assert batched == alone


def test_padding_masks_hide_pads_and_leave_no_row_empty():
    prefill, key_ok = S.padding_masks(torch.tensor([2, 0]), L=4, total=6)
    assert key_ok[:, 0, 0].tolist() == [[False, False, True, True, True, True], [True] * 6]
    assert prefill.shape == (2, 1, 4, 4) and prefill.any(-1).all()  # an all-False row makes some SDPA kernels NaN
    assert prefill[0, 0].tolist() == [[True, False, False, False],  # pad query: itself only
                                      [False, True, False, False],
                                      [False, False, True, False],  # first real token: itself, not the pads
                                      [False, False, True, True]]
    assert torch.equal(prefill[1, 0], torch.ones(4, 4, dtype=torch.bool).tril())  # unpadded row: plain causal


def test_padded_batch_has_no_nan(model, monkeypatch):
    steps = record_logits(monkeypatch)
    S.generate(model, PROMPTS, max_new_tokens=3, temperature=0)
    assert all(torch.isfinite(s).all() for s in steps)


# -------------------------------------------------------------------------------------------- the logit steps

def probs_logits(probs):
    return torch.tensor([probs]).log()


def test_top_p_keeps_the_token_that_crosses_p():
    logits = probs_logits([0.5, 0.3, 0.15, 0.05])
    kept = torch.isfinite(S.top_p_filter(logits, 0.6))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.6, so 0.3 (which crosses it) stays too
    assert torch.isfinite(S.top_p_filter(logits, 0.5))[0].tolist() == [True, False, False, False]
    shuffled = probs_logits([0.15, 0.5, 0.05, 0.3])  # order in the vocabulary does not matter
    assert torch.isfinite(S.top_p_filter(shuffled, 0.6))[0].tolist() == [False, True, False, True]


def test_top_p_one_and_top_k_zero_change_nothing():
    logits = torch.randn(3, 50)
    assert torch.equal(S.top_p_filter(logits, 1.0), logits)
    assert torch.equal(S.top_k_filter(logits, 0), logits)
    assert torch.equal(S.filter_logits(logits, 1.0, 0, 1.0), logits)


def test_top_k_keeps_k():
    logits = torch.randn(3, 50)
    kept = torch.isfinite(S.top_k_filter(logits, 5))
    assert kept.sum(-1).tolist() == [5, 5, 5]
    assert torch.equal(kept, torch.zeros_like(kept).scatter(1, logits.topk(5).indices, True))


def test_tiny_top_p_never_gives_nan(model):
    logits = torch.randn(4, 50) * 30
    probs = S.filter_logits(logits, 1.0, 0, 1e-12).softmax(-1)
    assert torch.isfinite(probs).all()
    assert torch.equal(probs.argmax(-1), logits.argmax(-1)) and (probs.max(-1).values == 1).all()
    assert S.generate(model, PROMPTS, 8, top_p=1e-12, seed=0) == S.generate(model, PROMPTS, 8, temperature=0)


def test_temperature_applies_before_the_filters():
    logits = probs_logits([0.5, 0.3, 0.15, 0.05])
    # T=0.1 makes the top token ~0.99 likely, so top-p 0.6 keeps it alone; filtering first would keep two.
    assert torch.isfinite(S.filter_logits(logits, 0.1, 0, 0.6)).sum() == 1
    assert torch.isfinite(S.filter_logits(logits, 1.0, 0, 0.6)).sum() == 2
    assert torch.isfinite(S.filter_logits(logits, 10.0, 0, 0.6)).sum() == 3  # flattened: more tokens needed
    assert torch.allclose(S.apply_temperature(logits, 2.0), logits / 2)


def test_top_k_one_equals_greedy(model):
    assert S.generate(model, PROMPTS, 12, top_k=1, seed=3) == S.generate(model, PROMPTS, 12, temperature=0)


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = S.apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 1.0]]  # positive divided, negative multiplied, unseen untouched
    before, after = logits.softmax(-1)[0], out.softmax(-1)[0]
    assert after[0] < before[0] and after[1] < before[1] and after[2] > before[2]
    assert torch.equal(S.apply_repetition_penalty(logits, seen, 1.0), logits)


def test_repetition_penalty_counts_the_prompt_but_not_the_padding(model, monkeypatch):
    steps = record_logits(monkeypatch)
    S.generate(model, PROMPTS, 1, temperature=0, eos_id=0)  # pads are eos_id 0, which no prompt contains
    plain = steps.pop()
    S.generate(model, PROMPTS, 1, temperature=0, eos_id=0, repetition_penalty=3.0)
    changed = steps.pop() != plain
    for row, prompt in enumerate(PROMPTS):
        assert sorted(torch.nonzero(changed[row]).flatten().tolist()) == sorted(set(prompt))


def test_repetition_penalty_tracks_generated_tokens(model, monkeypatch):
    steps = record_logits(monkeypatch)
    out = S.generate(model, [[1]], 6, temperature=0, repetition_penalty=5.0)[0]
    raw = [model(torch.tensor([[1] + out[:t]]))[0, -1] for t in range(6)]
    for t in range(6):
        changed = set(torch.nonzero((steps[t][0] - raw[t]).abs() > 1e-3).flatten().tolist())
        assert changed == set([1] + out[:t])


# ----------------------------------------------------------------------------------------------- the loop

def test_same_seed_same_samples_and_global_rng_untouched(model):
    state = torch.get_rng_state()
    a = S.generate(model, PROMPTS, 15, temperature=1.2, top_k=20, top_p=0.95, seed=123)
    b = S.generate(model, PROMPTS, 15, temperature=1.2, top_k=20, top_p=0.95, seed=123)
    c = S.generate(model, PROMPTS, 15, temperature=1.2, top_k=20, top_p=0.95, seed=124)
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)


def test_each_row_stops_at_its_own_eos(model):
    full = S.generate(model, PROMPTS, 15, temperature=0)
    # Make eos a token that row 0 writes early and some other row writes late or never.
    eos = full[0][1]
    later = [row for row in full if eos not in row[:5]]
    assert later, "fixture model changed: pick another eos"
    got = S.generate(model, PROMPTS, 15, temperature=0, eos_id=eos)
    for row, out in zip(full, got):
        assert out == (row[:row.index(eos)] if eos in row else row)
    assert len(got[0]) == 1 and max(len(o) for o in got) >= 5  # row 0 stopped early, the others went on


def test_loop_stops_when_every_row_has_finished(model):
    full = S.generate(model, PROMPTS, 15, temperature=0)
    # eos = a token every row writes; the loop must end at the step where the slowest row writes it
    common = set.intersection(*map(set, full))
    assert common, "fixture model changed: no token common to every row"
    eos = min(common, key=lambda t: max(row.index(t) for row in full))
    last = max(row.index(eos) for row in full)
    assert last < 13
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = S.generate(model, PROMPTS, 15, temperature=0, eos_id=eos)
    finally:
        handle.remove()
    assert out == [row[:row.index(eos)] for row in full]
    # the prefill goes through hidden_states (no forward hook); then one forward per token fed back, and none
    # after the step at which the last row wrote its eos
    assert len(calls) == last


def test_long_prompt_is_cut_from_the_left_with_a_notice(model):
    long = list(range(1, 50)) * 2  # 98 tokens, context 64
    with pytest.warns(S.PromptTruncatedWarning, match="prompt 0"):
        out = S.generate(model, [long], 10, temperature=0)
    assert out == S.generate(model, [long[-54:]], 10, temperature=0)  # 64 - 10 positions left for the prompt


def test_bf16_inference_copy_leaves_the_model_alone(model):
    out = S.generate(model, PROMPTS, 8, temperature=0, dtype=torch.bfloat16)
    assert [len(o) for o in out] == [8] * 4 and all(0 <= t < 50 for o in out for t in o)
    assert model.lm_head.weight.dtype == torch.float32
    copy = S.for_inference(model, torch.bfloat16)
    assert copy is not model and copy.transformer.wte.weight.dtype == torch.bfloat16


def test_fp32_cpu_layout_changes_strides_not_results(model):
    tied = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50))
    fast = S.for_inference(tied, torch.float32)
    assert fast is not tied and all(p.is_contiguous() for p in tied.parameters())  # the original is untouched
    assert fast.lm_head.weight is fast.transformer.wte.weight  # still tied
    untied = S.for_inference(model, torch.float32)  # the fixture's head is its own matrix: it must stay so
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    c_fc = fast.transformer.h[0].mlp.c_fc.weight
    assert c_fc.shape == (128, 32) and c_fc.stride() == (1, 128)  # [out, in] shape, stored [in, out]
    assert S.generate(fast, PROMPTS, 10, temperature=0) == S.generate(tied, PROMPTS, 10, temperature=0)
    x = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert torch.allclose(fast(x), tied(x), atol=1e-5)


needs_prepack = pytest.mark.skipif(not fast_decode.can_prepack(torch.zeros(1, dtype=torch.bfloat16)),
                                   reason="no native bf16 + oneDNN on this CPU: the prepacked path is not taken")


@needs_prepack
def test_prepacked_bf16_gives_the_plain_paths_logits_and_tweets():
    torch.manual_seed(0)
    tied = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=100))
    fast = S.for_inference(tied, torch.bfloat16)  # fast=True: every nn.Linear swapped for a PrepackedLinear
    plain = S.for_inference(tied, torch.bfloat16, fast=False)
    n_linear = sum(isinstance(m, nn.Linear) for m in plain.modules())
    assert n_linear == 2 * 4 + 1 and sum(isinstance(m, fast_decode.PrepackedLinear) for m in fast.modules()) == n_linear
    assert not any(isinstance(m, nn.Linear) for m in fast.modules())
    x = torch.randint(0, 100, (3, 9))
    with torch.no_grad():
        assert torch.equal(fast(x), plain(x))  # the same kernel on a reordered copy: bit for bit on this CPU
    prompts = [[1, 2, 3, 4, 5, 6, 7], [7, 8], [9]]  # left padding, prefill and one-token steps
    assert S.generate(fast, prompts, 12, temperature=0) == S.generate(plain, prompts, 12, temperature=0)
    settings = dict(temperature=0.9, top_k=20, top_p=0.9, seed=3)
    assert S.generate(fast, prompts, 12, **settings) == S.generate(plain, prompts, 12, **settings)
    twin = copy.deepcopy(fast)  # the packed weights cannot be copied; a copy shares them
    assert twin.lm_head.packed is fast.lm_head.packed
    assert S.generate(twin, prompts, 12, temperature=0) == S.generate(plain, prompts, 12, temperature=0)
    with pytest.raises(ValueError, match="already prepared for bf16"):
        S.for_inference(fast, torch.float32)
    assert tied.lm_head.weight is tied.transformer.wte.weight and isinstance(tied.lm_head, nn.Linear)  # untouched


def test_prepack_is_only_for_bf16_weights_on_cpu():
    assert not fast_decode.can_prepack(torch.zeros(1))  # fp32: the transposed layout instead
    plain32 = S.for_inference(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, n_positions=16, vocab_size=50)),
                              torch.float32)
    assert not fast_decode.is_prepacked(plain32)


def test_default_inference_dtype(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert S.inference_dtype(cpu, 124_000_000) == torch.bfloat16  # big: memory-bound, bf16 halves the bytes
    assert S.inference_dtype(cpu, 1_300_000) == torch.float32  # tiny: the weights sit in cache
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert S.inference_dtype(cpu, 124_000_000) == torch.float32  # no native bf16: emulation is slower


def test_training_mode_is_restored_and_dropout_is_off():
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=30, dropout=0.5))
    m.train()
    a = S.generate(m, [[1, 2]], 6, temperature=0)
    assert m.training
    assert a == S.generate(m.eval(), [[1, 2]], 6, temperature=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-0.1), "temperature"), (dict(top_k=-1), "top_k"), (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"), (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=64), "no room"),
])
def test_bad_settings_are_refused(model, kwargs, match):
    kwargs = {"max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        S.generate(model, PROMPTS, **kwargs)


def test_empty_prompt_is_refused(model):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        S.generate(model, [[1], []], 4)


@pytest.mark.parametrize("top_k, top_p, expected", [
    (0, 1.0, [0.5, 0.3, 0.15, 0.05]),  # plain sampling
    (2, 1.0, [0.625, 0.375, 0, 0]),  # top-k through the k-candidates shortcut: renormalised over the two best
    (3, 0.6, [0.625, 0.375, 0, 0]),  # top-k then top-p
    (0, 0.9, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),  # top-p alone: 0.15 crosses 0.9 and stays
])
def test_sampling_follows_the_filtered_distribution(top_k, top_p, expected):
    # 4000 draws through choose_next: frequencies within 4 standard errors, and filtered tokens never drawn.
    g = torch.Generator().manual_seed(0)
    logits = probs_logits([0.5, 0.3, 0.15, 0.05]).expand(4000, 4)
    draws = S.choose_next(logits, 1.0, top_k, top_p, g)
    freq = torch.bincount(draws, minlength=4).float() / 4000
    for f, p in zip(freq.tolist(), expected):
        assert abs(f - p) <= 4 * math.sqrt(p * (1 - p) / 4000)

"""minisft's GPT against transformers' GPT2LMHeadModel (the reference), and the mechanics of the module itself."""

import pytest
import torch
from conftest import write_official_layout

from minisft.fast_head import hidden_and_head
from minisft.model import GPT, GPTConfig, KVCache
from minisft.pretrained import load_model

TOL = 1e-4  # fp32 logits; the two implementations order their matmuls differently


def reference(folder):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(folder).eval()


def max_diff(a, b):
    return (a - b).abs().max().item()


@torch.no_grad()
def test_logits_match_transformers_layout(small_hf_folder):
    ref, ours = reference(small_hf_folder), load_model(small_hf_folder)
    idx = torch.randint(0, ours.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    assert max_diff(ours(idx), ref(idx).logits) <= TOL


@torch.no_grad()
def test_logits_match_official_bare_layout(small_hf_folder, tmp_path):
    ref = reference(small_hf_folder)
    write_official_layout(ref, tmp_path)
    ours = load_model(tmp_path)
    idx = torch.randint(0, ours.config.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    assert max_diff(ours(idx), ref(idx).logits) <= TOL


@torch.no_grad()
def test_right_padded_batch_matches_on_real_positions(small_hf_folder):
    ref, ours = reference(small_hf_folder), load_model(small_hf_folder)
    lengths = [17, 5, 11]
    g = torch.Generator().manual_seed(2)
    idx = torch.full((3, 17), ours.config.eos_token_id)  # pad = eos, to the right of each sequence
    attention = torch.zeros(3, 17, dtype=torch.long)
    for row, n in enumerate(lengths):
        idx[row, :n] = torch.randint(0, ours.config.vocab_size, (n,), generator=g)
        attention[row, :n] = 1
    ours_logits, ref_logits = ours(idx), ref(idx, attention_mask=attention).logits
    for row, n in enumerate(lengths):
        # Causal attention: a real token never sees the padding after it, so no mask is needed on our side.
        assert max_diff(ours_logits[row, :n], ref_logits[row, :n]) <= TOL
        assert max_diff(ours_logits[row, :n], ours(idx[row:row + 1, :n])[0]) <= 1e-5  # = the unpadded row


@torch.no_grad()
def test_gpt2_124m_shape_matches_transformers(gpt2_shaped):
    ref, folder = gpt2_shaped
    ours = load_model(folder)
    assert ours.num_params() == 124_439_808
    idx = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(3))
    assert max_diff(ours(idx), ref(idx).logits) <= TOL


@torch.no_grad()
def test_kv_cache_matches_full_forward(small_hf_folder):
    model = load_model(small_hf_folder)
    idx = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(4))
    full = model(idx)
    cache = KVCache(model.config, batch_size=2, max_len=24)
    parts = [model(idx[:, :10], cache=cache)]  # prefill: 10 positions at once (plain causal mask)
    parts += [model(idx[:, t:t + 1], cache=cache) for t in range(10, 16)]  # one token at a time
    parts.append(model(idx[:, 16:], cache=cache))  # a chunk of 8 after a past: the offset causal mask
    assert cache.pos == 24
    assert max_diff(torch.cat(parts, dim=1), full) <= 1e-5


@torch.no_grad()
def test_left_padding_with_mask_and_positions_matches_unpadded():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=50)).eval()
    seq = torch.randint(0, 50, (1, 6))
    pad = 3
    idx = torch.cat([torch.zeros(1, pad, dtype=torch.long), seq], dim=1)
    real = torch.tensor([[False] * pad + [True] * 6])
    mask = torch.ones(9, 9, dtype=torch.bool).tril() & real  # causal, and never look at a pad key
    positions = (real.long().cumsum(1) - 1).clamp(min=0)  # the first real token is position 0
    padded = model(idx, position_ids=positions, attn_mask=mask[None, None])
    assert max_diff(padded[:, pad:], model(seq)) <= 1e-5


def test_kv_cache_refuses_to_overflow():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=20)).eval()
    cache = KVCache(model.config, batch_size=1, max_len=4)
    model(torch.zeros(1, 4, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="KV cache is full"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_positions_past_the_context_are_refused():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=8, vocab_size=20))
    with pytest.raises(ValueError, match="past the context of 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_lm_head_is_tied_and_counted_once():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=8, vocab_size=20))
    assert model.lm_head.weight is model.transformer.wte.weight
    untied_count = sum(p.numel() for name, p in model.named_parameters(remove_duplicate=False))
    assert model.num_params() == untied_count - 20 * 16


def _autograd_sum_reference(model, idx):
    """The textbook tied forward: nn.Embedding lookup + lm_head, autograd adding the weight's two gradients."""
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1))[None])
    for i, block in enumerate(model.transformer.h):
        x = block(x, None, None, i)
    return model.transformer.ln_f(x), model.lm_head.weight


@pytest.mark.parametrize("head_used", ["logits", "unused", "summed"])
def test_tied_embedding_sums_both_gradients_like_autograd(head_used):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50))
    idx = torch.randint(0, 50, (3, 12))
    idx[0, :4] = 7  # a repeated token: its rows must add up

    def grads(trunk):
        model.zero_grad(set_to_none=True)
        hidden, head = trunk(idx)
        loss = {"logits": lambda: (hidden @ head.T).logsumexp(-1).sum(),
                "unused": lambda: hidden.square().sum(),
                "summed": lambda: hidden.square().sum() + head.sum()}[head_used]()  # a broadcast gradient
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    ours, ref = grads(lambda i: hidden_and_head(model, i)), grads(lambda i: _autograd_sum_reference(model, i))
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], msg=name)
    assert ours["transformer.wte.weight"].layout == torch.strided  # dense, as the fused optimizer needs


def test_tied_embedding_backward_makes_no_extra_vocab_sized_tensor():
    """Autograd's own way fills a [V, C] zero tensor for the lookup and adds two [V, C] tensors; ours neither."""
    V, C = 300, 16
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=C, n_positions=16, vocab_size=V))
    idx = torch.randint(0, V, (2, 10))

    def vocab_sized_ops(trunk):
        hidden, head = trunk(idx)
        loss = (hidden @ head.T).logsumexp(-1).sum()
        with torch.profiler.profile(record_shapes=True) as prof:
            loss.backward()
        return {e.key for e in prof.key_averages(group_by_input_shape=True)
                if e.key in ("aten::add", "aten::fill_", "aten::zero_") and [V, C] in e.input_shapes}

    assert vocab_sized_ops(lambda i: _autograd_sum_reference(model, i))  # the reference does make them...
    assert not vocab_sized_ops(lambda i: hidden_and_head(model, i))  # ...and the tied path does not

"""Packing: several examples per row must compute exactly what they compute one per row."""

import random

import pytest
import torch

from minisft import data as D
from minisft.fast_head import head_loss_sums
from minisft.loss import IGNORE
from minisft.model import GPT, GPTConfig
from minisft.packing import block_causal_mask, collate_packed, pack, packed_batches, packed_loss_sums


def make_examples(n, seed=0, vocab=50, lengths=(3, 17)):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        L = rng.randint(*lengths)
        ids = [rng.randrange(1, vocab) for _ in range(L + 1)]
        n_prompt = rng.randint(1, L)
        targets = [IGNORE] * (n_prompt - 1) + ids[n_prompt:]
        out.append(D.Example(ids[:-1], targets, weight=rng.choice([0.5, 1.0, 3.0]), id=str(i)))
    return out


def test_pack_places_every_example_once_within_max_len():
    examples = make_examples(40)
    rows = pack(examples, max_len=32)
    assert sorted(i for row in rows for i in row) == list(range(40))
    assert all(sum(len(examples[i].input_ids) for i in row) <= 32 for row in rows)
    assert len(rows) < 40  # several examples share a row
    with pytest.raises(ValueError, match="longer than a packed row"):
        pack(examples, max_len=5)


def test_packed_batches_cover_the_epoch_and_replay_from_seed_and_epoch():
    examples = make_examples(30)
    a = packed_batches(examples, 32, rows_per_batch=2, seed=1, epoch=0)
    assert sorted(i for batch in a for row in batch for i in row) == list(range(30))
    assert a == packed_batches(examples, 32, rows_per_batch=2, seed=1, epoch=0)
    assert a != packed_batches(examples, 32, rows_per_batch=2, seed=1, epoch=1)


def test_collate_packed_positions_restart_and_mask_is_block_diagonal_causal():
    examples = [D.Example([1, 2, 3], [IGNORE, 3, 4], 2.0), D.Example([5, 6], [6, 7], 0.5)]
    mb = collate_packed(examples, [[0, 1]], pad_id=0, length=7)
    assert mb["input_ids"].tolist() == [[1, 2, 3, 5, 6, 0, 0]]
    assert mb["targets"].tolist() == [[IGNORE, 3, 4, 6, 7, IGNORE, IGNORE]]
    assert mb["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 0]]  # padding: 0
    assert mb["weights"].tolist() == [[2.0, 2.0, 2.0, 0.5, 0.5, 0.0, 0.0]]
    assert mb["n_targets"] == 4
    expected = torch.tensor([[1, 0, 0, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0, 0, 0],
                             [1, 1, 1, 0, 0, 0, 0],
                             [0, 0, 0, 1, 0, 0, 0],  # the second example starts afresh: it can't see the first
                             [0, 0, 0, 1, 1, 0, 0],
                             [0, 0, 0, 0, 0, 1, 0],  # padding sees padding (never an empty row: no NaN)
                             [0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(mb["attn_mask"][0, 0], expected)
    assert torch.equal(block_causal_mask(mb["doc_ids"]), mb["attn_mask"])
    with pytest.raises(ValueError, match="more than 4"):
        collate_packed(examples, [[0, 1]], pad_id=0, length=4)


def _sums_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    s = fn()
    s.weighted.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return s, grads


def test_packed_loss_and_gradients_equal_unpacked():
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50, bos_token_id=0,
                       eos_token_id=0)
    model = GPT(config)
    with torch.no_grad():  # non-trivial position embeddings: a position that failed to restart would show
        model.transformer.wpe.weight.normal_(std=0.5)
    examples = make_examples(12, seed=3)
    W = model.lm_head.weight

    def unpacked():  # one example per row, right-padded: the loop's usual batches
        mb = D.collate(examples, pad_id=0)
        return head_loss_sums(model.hidden_states(mb["input_ids"]), W, mb["targets"], mb["weights"])

    def packed():
        mb = collate_packed(examples, pack(examples, 40), pad_id=0, length=48)  # fixed length: padding too
        hidden = model.hidden_states(mb["input_ids"], position_ids=mb["position_ids"], attn_mask=mb["attn_mask"])
        return packed_loss_sums(hidden, W, mb["targets"], mb["weights"])

    a, grads_a = _sums_and_grads(model, unpacked)
    b, grads_b = _sums_and_grads(model, packed)
    assert b.tokens == a.tokens == sum(t != IGNORE for e in examples for t in e.targets)
    for field in ("weighted", "weight", "nll"):
        torch.testing.assert_close(getattr(b, field), getattr(a, field), rtol=1e-5, atol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_without_the_block_mask_packing_would_leak_between_examples():
    # The same packed row under the plain causal mask: the second example sees the first, its loss changes.
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=50))
    examples = make_examples(4, seed=5)
    mb = collate_packed(examples, [[0, 1, 2, 3]], pad_id=0)
    W = model.lm_head.weight
    good = packed_loss_sums(model.hidden_states(mb["input_ids"], position_ids=mb["position_ids"],
                                                attn_mask=mb["attn_mask"]), W, mb["targets"], mb["weights"])
    leaky = packed_loss_sums(model.hidden_states(mb["input_ids"], position_ids=mb["position_ids"]), W,
                             mb["targets"], mb["weights"])
    assert not torch.allclose(good.nll, leaky.nll)


def test_packed_loss_sums_gives_each_position_its_own_weight():
    torch.manual_seed(0)
    hidden, W = torch.randn(1, 4, 8), torch.randn(10, 8)
    targets = torch.tensor([[1, IGNORE, 2, 3]])
    weights = torch.tensor([[2.0, 2.0, 0.5, 0.0]])
    s = packed_loss_sums(hidden, W, targets, weights)
    nll = torch.nn.functional.cross_entropy(hidden[0] @ W.t(), targets[0], reduction="none", ignore_index=IGNORE)
    torch.testing.assert_close(s.weighted, 2.0 * nll[0] + 0.5 * nll[2])
    torch.testing.assert_close(s.weight, torch.tensor(2.5))
    assert s.tokens == 3

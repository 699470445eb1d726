"""The loss and gradient accumulation: sum over target tokens, divided once per step."""

import math

import pytest
import torch

from minisft.fast_head import head_loss_sums
from minisft.loss import IGNORE, loss_sums
from minisft.model import GPT, GPTConfig
from minisft.objective import SFTObjective
from minisft.precision import pick_precision
from minisft.training import accumulate_gradients

V = 97


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=V))


def make_examples(n=8, seed=1):
    """n examples of different lengths: a prompt part (ignored) then targets, like data.py produces."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(6, 30, (1,), generator=g))
        prompt = int(torch.randint(1, length - 2, (1,), generator=g))
        ids = torch.randint(0, V, (length,), generator=g)
        targets = torch.randint(0, V, (length,), generator=g)
        targets[:prompt] = IGNORE
        out.append((ids, targets, 0.25 + float(torch.rand(1, generator=g)) * 3))  # non-uniform weights
    return out


def collate(examples):
    T = max(len(ids) for ids, _, _ in examples)
    x = torch.zeros(len(examples), T, dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE)
    for b, (ids, tgt, _) in enumerate(examples):
        x[b, :len(ids)], y[b, :len(ids)] = ids, tgt
    return {"input_ids": x, "targets": y, "weights": torch.tensor([w for _, _, w in examples])}


def grads_for(examples, micro_size, seed=0):
    model = tiny_model(seed)
    objective = SFTObjective(model)
    micro = [collate(examples[i:i + micro_size]) for i in range(0, len(examples), micro_size)]
    metrics = accumulate_gradients(objective, micro, pick_precision(torch.device("cpu"), "fp32"))
    return metrics, {n: p.grad.clone() for n, p in model.named_parameters()}


def reference_loss(examples, seed=0):
    """The definition, computed naively example by example: sum(w * CE) / sum(w) over all target tokens."""
    model = tiny_model(seed)
    num = den = 0.0
    for ids, tgt, w in examples:
        logits = model(ids[None])[0]
        keep = tgt != IGNORE
        ce = torch.nn.functional.cross_entropy(logits[keep], tgt[keep], reduction="sum")
        num, den = num + w * float(ce.detach()), den + w * int(keep.sum())
    return num / den


def test_targets_only_head_equals_full_logits():
    model = tiny_model()
    batch = collate(make_examples())
    hidden = model.hidden_states(batch["input_ids"])
    fast = head_loss_sums(hidden, model.lm_head.weight, batch["targets"], batch["weights"])
    slow = loss_sums(model.lm_head(hidden), batch["targets"], batch["weights"])
    assert fast.tokens == slow.tokens
    for a, b in [(fast.weighted, slow.weighted), (fast.weight, slow.weight), (fast.nll, slow.nll)]:
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    g_fast = torch.autograd.grad(fast.weighted, model.transformer.wte.weight, retain_graph=True)[0]
    g_slow = torch.autograd.grad(slow.weighted, model.transformer.wte.weight)[0]
    assert torch.allclose(g_fast, g_slow, atol=1e-6)


def head_case(seed=0, N_rows=3, T=20, C=16):
    """Hidden states that need a gradient, a head, targets with masked prompts and padding, unequal weights."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N_rows, T, C, generator=g, requires_grad=True)
    W = torch.randn(V, C, generator=g, requires_grad=True)
    targets = torch.randint(0, V, (N_rows, T), generator=g)
    targets[:, :5] = IGNORE
    targets[-1, 12:] = IGNORE
    return hidden, W, targets, torch.tensor([0.5, 1.0, 2.5])[:N_rows]


@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_chunked_head_gives_the_plain_heads_loss_and_gradients(chunk):
    """The chunked head (gradient made during the forward pass) = autograd through the plain targets-only head."""
    hidden, W, targets, weights = head_case()
    plain = head_loss_sums(hidden, W, targets, weights, chunk=None)
    chunked = head_loss_sums(hidden, W, targets, weights, chunk=chunk)
    assert chunked.tokens == plain.tokens == 37  # 15 + 15 + 7
    for a, b in [(chunked.weighted, plain.weighted), (chunked.weight, plain.weight), (chunked.nll, plain.nll)]:
        torch.testing.assert_close(a, b)
    # Scaled the way the loop scales a micro-batch's sum (world / denominator), not a plain .backward() of 1.
    g_plain = torch.autograd.grad(plain.weighted * 0.37, [hidden, W])
    g_chunked = torch.autograd.grad(chunked.weighted * 0.37, [hidden, W])
    for a, b in zip(g_chunked, g_plain):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # evaluation takes the forward-only chunks: the same sums
        torch.testing.assert_close(head_loss_sums(hidden, W, targets, weights, chunk=chunk).weighted, plain.weighted)


def test_chunked_head_is_stable_on_huge_logits():
    """Logits in the thousands: exp would overflow without the max subtracted first; a probability of e^-1000
    would give log(0) = -inf if CE were taken as -log(softmax)."""
    hidden, W, targets, weights = head_case()
    hidden = (hidden * 300).detach().requires_grad_()
    plain = head_loss_sums(hidden, W, targets, weights, chunk=None)
    chunked = head_loss_sums(hidden, W, targets, weights, chunk=7)
    assert torch.isfinite(chunked.weighted) and float(chunked.nll) > 1000
    torch.testing.assert_close(chunked.weighted, plain.weighted)
    torch.testing.assert_close(torch.autograd.grad(chunked.weighted, W)[0], torch.autograd.grad(plain.weighted, W)[0])


def test_chunked_head_under_bf16_autocast_stays_close_and_keeps_float32_gradients():
    hidden, W, targets, weights = head_case(seed=1)
    exact = head_loss_sums(hidden, W, targets, weights, chunk=None)
    g_exact = torch.autograd.grad(exact.weighted, [hidden, W])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for chunk in (None, 7):  # the plain head under autocast and the chunked one: both within bf16's error
            s = head_loss_sums(hidden, W, targets, weights, chunk=chunk)
            grads = torch.autograd.grad(s.weighted, [hidden, W])
            assert s.weighted.dtype == torch.float32
            torch.testing.assert_close(s.weighted, exact.weighted, rtol=2e-2, atol=0)
            for g, ge in zip(grads, g_exact):
                assert g.dtype == torch.float32
                assert float((g - ge).norm() / ge.norm()) < 2e-2


@pytest.mark.parametrize("rows", [1, 3, 64])
def test_float32_blocks_of_a_bf16_chunk_change_nothing(monkeypatch, rows):
    """Under autocast the softmax runs on float32 copies of a few rows at a time; each row's softmax is its own,
    so the block size must not change a single bit of the loss or the gradients."""
    import minisft.fast_head as L

    hidden, W, targets, weights = head_case(seed=2)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s = head_loss_sums(hidden, W, targets, weights, chunk=7)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            nll = head_loss_sums(hidden, W, targets, weights, chunk=7).nll
        return [s.weighted.detach(), nll, *torch.autograd.grad(s.weighted, [hidden, W])]

    whole = run()  # SOFTMAX_ROWS (64) > chunk: one block per chunk
    monkeypatch.setattr(L, "SOFTMAX_ROWS", rows)
    blocked = run()
    for a, b in zip(blocked, whole):
        assert torch.equal(a, b)
    exact = head_loss_sums(hidden, W, targets, weights, chunk=None)  # float32: what both must stay close to
    for g, ge in zip(blocked[2:], torch.autograd.grad(exact.weighted, [hidden, W])):
        assert float((g - ge).norm() / ge.norm()) < 2e-2


def test_chunked_head_keeps_no_logits_for_backward():
    """What autograd would keep until backward: the plain head saves [N, V] tensors, the chunked head none."""
    hidden, W, targets, weights = head_case()
    for chunk, expect_logits in ((None, True), (7, False)):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
            head_loss_sums(hidden, W, targets, weights, chunk=chunk)
        assert any(shape == (37, V) for shape in saved) == expect_logits, (chunk, saved)


def test_chunked_head_refuses_a_second_backward():
    hidden, W, targets, weights = head_case()
    s = head_loss_sums(hidden, W, targets, weights)
    s.weighted.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        s.weighted.backward()


def test_accumulation_split_does_not_change_loss_or_gradients():
    examples = make_examples(8)
    m8, g8 = grads_for(examples, 8)
    m2, g2 = grads_for(examples, 2)
    m1, g1 = grads_for(examples, 1)
    assert m8["train/loss"] == pytest.approx(reference_loss(examples), rel=1e-5)
    assert m2["train/loss"] == pytest.approx(m8["train/loss"], rel=1e-6)
    assert m1["train/loss"] == pytest.approx(m8["train/loss"], rel=1e-6)
    for name in g8:
        assert torch.allclose(g2[name], g8[name], atol=1e-6, rtol=1e-4), name
        assert torch.allclose(g1[name], g8[name], atol=1e-6, rtol=1e-4), name


def test_mean_of_micro_batch_means_would_differ():
    """The bug the sum-then-divide rule avoids is real on these variable-length batches."""
    examples = make_examples(8)
    model = tiny_model()
    means = []
    for i in range(0, 8, 2):
        b = collate(examples[i:i + 2])
        s = head_loss_sums(model.hidden_states(b["input_ids"]), model.lm_head.weight, b["targets"], b["weights"])
        means.append(float(s.weighted / s.weight))
    assert abs(sum(means) / len(means) - reference_loss(examples)) > 1e-3


def test_weight_zero_equals_removing_the_example():
    examples = make_examples(6)
    zeroed = list(examples)
    ids, tgt, _ = zeroed[2]
    zeroed[2] = (ids, tgt, 0.0)
    removed = examples[:2] + examples[3:]
    mz, gz = grads_for(zeroed, 3)
    mr, gr = grads_for(removed, 5)
    assert mz["train/loss"] == pytest.approx(mr["train/loss"], rel=1e-6)
    for name in gz:
        assert torch.allclose(gz[name], gr[name], atol=1e-6, rtol=1e-4), name


def test_uniform_weight_c_equals_weight_one():
    examples = make_examples(6)
    ones = [(i, t, 1.0) for i, t, _ in examples]
    sevens = [(i, t, 7.0) for i, t, _ in examples]
    m1, g1 = grads_for(ones, 3)
    m7, g7 = grads_for(sevens, 3)
    assert m7["train/loss"] == pytest.approx(m1["train/loss"], rel=1e-6)
    for name in g1:
        assert torch.allclose(g7[name], g1[name], atol=1e-6, rtol=1e-4), name


def test_all_masked_micro_batch_adds_zero_not_nan():
    examples = make_examples(4)
    ids, tgt, w = examples[0]
    masked = (ids, torch.full_like(tgt, IGNORE), w)
    model = tiny_model()
    b = collate([masked])
    s = head_loss_sums(model.hidden_states(b["input_ids"]), model.lm_head.weight, b["targets"], b["weights"])
    assert s.tokens == 0 and float(s.weighted) == 0.0
    s.weighted.backward()  # still a graph: backward works and gives zero gradients
    assert all(torch.all(p.grad == 0) for p in model.parameters() if p.grad is not None)
    # In a step next to real micro-batches it changes nothing.
    m_with, g_with = grads_for([masked] + examples[1:], 1)
    m_without, g_without = grads_for(examples[1:], 1)
    assert math.isfinite(m_with["train/loss"])
    assert m_with["train/loss"] == pytest.approx(m_without["train/loss"], rel=1e-6)
    for name in g_with:
        assert torch.allclose(g_with[name], g_without[name], atol=1e-6, rtol=1e-4), name
    # A step whose targets are ALL masked: loss 0, finite.
    m_none, _ = grads_for([masked], 1)
    assert m_none["train/loss"] == 0.0


def test_unweighted_loss_equals_transformers_labels_loss(tmp_path):
    transformers = pytest.importorskip("transformers")
    from minisft.pretrained import load_model

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64,
                                                              vocab_size=V, bos_token_id=0, eos_token_id=0)).eval()
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path).eval()
    # Full sequences with a masked prompt, in Hugging Face's convention (labels = ids, the model shifts inside)...
    g = torch.Generator().manual_seed(3)
    full = torch.randint(0, V, (3, 20), generator=g)
    labels = full.clone()
    labels[0, :5], labels[1, :9], labels[2, :2] = IGNORE, IGNORE, IGNORE
    labels[1, 15:] = IGNORE  # padding at the end of row 1
    hf_loss = hf(full, labels=labels).loss
    # ...and in ours: the shift by one done up front (input = ids[:-1], targets = ids[1:]).
    s = head_loss_sums(ours.hidden_states(full[:, :-1]), ours.lm_head.weight, labels[:, 1:], torch.ones(3))
    assert float(s.weighted / s.weight) == pytest.approx(float(hf_loss), abs=1e-5)
    assert float(s.nll / s.tokens) == pytest.approx(float(hf_loss), abs=1e-5)


def test_the_fast_head_switch_changes_nothing_but_the_speed():
    """SFTObjective's fast path (fast_head.py) and its textbook path (loss.py on full logits): the same loss and the
    same gradients for every parameter, the tied embedding included, through the loop's own accumulation."""
    examples = make_examples()
    micro = [collate(examples[:3]), collate(examples[3:])]
    results = []
    for fast in (True, False):
        model = tiny_model()
        fp32 = pick_precision(torch.device("cpu"), "fp32")
        metrics = accumulate_gradients(SFTObjective(model, fast=fast), micro, fp32)
        results.append((metrics, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (m_fast, g_fast), (m_plain, g_plain) = results
    assert m_fast["train/loss"] == pytest.approx(m_plain["train/loss"], rel=1e-6)
    assert m_fast["train/target_tokens"] == m_plain["train/target_tokens"]
    for name in g_plain:
        torch.testing.assert_close(g_fast[name], g_plain[name], rtol=1e-5, atol=1e-6, msg=name)

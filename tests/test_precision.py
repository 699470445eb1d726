"""What `--dtype auto` picks, and the optimizer the loop builds (fused on CPU: the same update, in fewer passes)."""

import pytest
import torch

from minisft import precision as P
from minisft.model import GPT, GPTConfig
from minisft.optimizer import make_optimizer

CPU = torch.device("cpu")


@pytest.mark.parametrize("has_bf16", [True, False])
def test_cpu_default_is_bf16_only_for_gpt2_sizes_on_cpus_with_bf16_units(monkeypatch, has_bf16):
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: has_bf16)
    assert P.default_dtype(CPU, 124_439_808) == ("bf16" if has_bf16 else "fp32")  # gpt2
    assert P.default_dtype(CPU, 1_350_000) == "fp32"  # the tiny model
    assert P.default_dtype(CPU) == "fp32"  # size unknown
    assert P.pick_precision(CPU, "auto", 124_439_808).dtype == ("bf16" if has_bf16 else "fp32")
    assert P.pick_precision(CPU, "fp32", 124_439_808).dtype == "fp32"  # asked for: obeyed


def test_explicit_fp16_brings_its_grad_scaler_and_bf16_none():
    assert P.pick_precision(CPU, "fp16").scaler is not None
    assert P.pick_precision(CPU, "bf16").scaler is None


def test_optimizer_decays_matrices_only_and_is_fused_on_cpu():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=50))
    opt = make_optimizer(model, 1e-2, 0.1, CPU)
    assert opt.defaults["fused"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied wte once


def test_fused_cpu_update_equals_the_default_adamw():
    torch.manual_seed(0)
    a = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=50))
    b = GPT(a.config)
    b.load_state_dict(a.state_dict())
    fused = make_optimizer(a, 1e-2, 0.1, CPU)
    plain = torch.optim.AdamW([{"params": [p for p in b.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in b.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                              lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # the same gradients into both: only the optimizers' arithmetic differs
        for p, q in zip(a.parameters(), b.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_importing_minisft_caps_onednn_caches_unless_the_user_set_them():
    """Without the caps, bf16 training on CPU grows oneDNN's kernel caches at every new batch shape."""
    import os
    import subprocess
    import sys

    code = "import minisft, os; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["16", "16"]
    env["LRU_CACHE_CAPACITY"] = "1024"  # the user's own setting wins
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["16", "1024"]

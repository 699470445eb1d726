"""LoRA written out, activation checkpointing, and the memory plan: each pinned to what it must do."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minisft import memory
from minisft.lora import TARGETS, add_lora, count, lora_layers
from minisft.model import GPT, GPTConfig, official_config
from minisft.objective import SFTObjective
from minisft.optimizer import make_optimizer
from minisft.precision import pick_precision
from minisft.pretrained import load_model, save_model
from minisft.training import main as train_main
from minisft.training import train_step
from minisft.tweets.datagen import generate_records

CPU = torch.device("cpu")


def small(seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=60))
    with torch.no_grad():  # non-zero biases and LayerNorms, so a merge that drops them would show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(0, 0.1)
    return model


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 60, (4, 12), generator=g)
    targets = torch.randint(0, 60, (4, 12), generator=g)
    targets[:, :4] = -100
    return {"input_ids": ids, "targets": targets, "weights": torch.ones(4)}


def test_lora_starts_exactly_at_the_base_model():
    base, lora = small(), small()
    add_lora(lora, rank=4, alpha=8)
    x = batch()["input_ids"]
    assert torch.equal(base(x), lora(x))  # B = 0: the update is exactly zero at step 0
    trainable, total = count(lora)
    assert trainable == 2 * (4 * (32 + 96) + 4 * (32 + 32) + 4 * (32 + 128) + 4 * (128 + 32))
    assert all(name.endswith(("lora_A", "lora_B")) for name, p in lora.named_parameters() if p.requires_grad)


def test_only_the_adapters_change_after_a_step_and_only_they_have_optimizer_state():
    model = add_lora(small(), rank=4, alpha=8, dropout=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, 1e-2, 0.1, CPU)
    for _ in range(2):
        train_step(SFTObjective(model), [batch()], optimizer, pick_precision(CPU, "fp32"), 1e-2, 1.0)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.endswith("lora_B") or k.endswith("lora_A") for k in changed)
    assert any(k.endswith("lora_B") for k in changed)
    assert len(optimizer.state) == 2 * len(lora_layers(model))  # A and B of each layer, nothing else


def test_merged_export_equals_the_unmerged_model_and_transformers_loads_it(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = add_lora(small(), rank=4, alpha=8)
    with torch.no_grad():
        for m in lora_layers(model).values():
            m.lora_B.normal_(0, 0.05)  # a trained-looking update
    model.eval()
    x = batch()["input_ids"]
    save_model(model, tmp_path)
    merged = load_model(str(tmp_path)).eval()
    torch.testing.assert_close(merged(x), model(x), rtol=0, atol=1e-5)
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.testing.assert_close(hf.eval()(x).logits, model(x), rtol=0, atol=1e-4)


def test_a_bf16_base_computes_in_fp32_and_under_autocast():
    model = add_lora(small(), rank=4, alpha=8, base_dtype=torch.bfloat16)
    assert all(m.base.weight.dtype == torch.bfloat16 for m in lora_layers(model).values())
    assert model.transformer.wte.weight.dtype == torch.float32
    x = batch()["input_ids"]
    with torch.no_grad():
        plain = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
    assert plain.dtype == torch.float32 and (plain - mixed.float()).abs().max() < 0.1


def test_a_bf16_base_is_read_straight_into_bf16_and_equals_casting_after(tmp_path):
    save_model(small(), tmp_path)
    loaded = load_model(str(tmp_path), frozen=TARGETS["attn+mlp"])
    assert loaded.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert loaded.transformer.h[0].ln_1.weight.dtype == loaded.transformer.wte.weight.dtype == torch.float32
    torch.manual_seed(0)  # the same A for both
    direct = add_lora(loaded, rank=4, alpha=8, base_dtype=torch.bfloat16)
    torch.manual_seed(0)
    after = add_lora(load_model(str(tmp_path)), rank=4, alpha=8, base_dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(direct.state_dict().values(), after.state_dict().values()))


def test_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for ckpt in (False, True):
        model = small()
        model.set_dropout(0.1)  # recomputation must replay the same dropout masks
        model.activation_checkpointing = ckpt
        model.train()
        torch.manual_seed(5)
        s = SFTObjective(model)(**{k: v for k, v in batch().items()})
        s.weighted.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=0, msg=name)


def test_resume_with_lora_is_bit_identical(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_records(160, seed=2)))
    args = ["--model", "tiny", "--data", str(data), "--out", str(tmp_path), "--batch-size", "8", "--tiny-vocab", "400",
            "--max-steps", "6", "--save-every", "0", "--eval-every", "0", "--final-eval", "0", "--wandb", "disabled",
            "--no-progress", "--lora-rank", "4", "--lora-dropout", "0.1", "--dropout", "0.1"]
    assert train_main(args + ["--name", "straight"]) == 0
    assert train_main(args + ["--name", "split", "--stop-after", "3"]) == 0
    assert train_main(["--resume", str(tmp_path / "split"), "--wandb", "disabled", "--no-progress"]) == 0

    def final(run):
        ckpt = Path(run) / (Path(run) / "latest").read_text().strip()
        return load_file(ckpt / "model.safetensors"), load_file(ckpt / "adapters.safetensors")

    (a_model, a_lora), (b_model, b_lora) = final(tmp_path / "straight"), final(tmp_path / "split")
    assert all(torch.equal(a_lora[k], b_lora[k]) for k in a_lora) and len(a_lora) == 2 * 4 * 4
    assert all(torch.equal(a_model[k], b_model[k]) for k in a_model)
    losses = [[json.loads(x)["train/loss"] for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()
               if "train/loss" in x] for r in ("straight", "split")]
    assert losses[0] == losses[1]


# ----------------------------------------------------------------------------------------------- the memory plan

def test_the_plan_adds_up_and_knows_what_lora_and_checkpointing_save():
    config = official_config("gpt2")
    assert memory.parameters(config) == 124_439_808  # the official count
    full = memory.plan(config, 8, 128)
    assert full.weights == full.gradients == full.optimizer / 2 == 124_439_808 * 4
    lora = memory.plan(config, 8, 128, "bf16", lora_rank=16, base_dtype="bf16")
    assert lora.gradients == memory.lora_parameters(config, 16, "attn+mlp") * 4 < full.gradients / 50
    P, M = memory.parameters(config), memory.matrices(config)  # the blocks' matrices in bf16, the rest fp32
    assert lora.weights == (P - M) * 4 + M * 2 + memory.lora_parameters(config, 16, "attn+mlp") * 4
    assert lora.weights < full.weights * 0.7
    ckpt = memory.plan(config, 8, 128, checkpointing=True)
    assert ckpt.activations < full.activations / 10 and ckpt.flops > full.flops and ckpt.total < full.total
    # backward frees activations as it makes gradients: the peak holds the larger of the two, not both
    assert full.total == pytest.approx(full.weights + full.optimizer + full.transient + full.runtime
                                       + max(full.activations + full.first_gradients, full.gradients))
    assert full.total < full.weights + full.gradients + full.optimizer + full.activations + full.runtime
    assert memory.plan(config, 16, 128).activations > 1.9 * full.activations  # activations grow with the batch


def test_a_run_that_cannot_fit_is_refused_naming_the_levers():
    xl = official_config("gpt2-xl")
    p = memory.plan(xl, 8, 256)
    assert p.total > 24 * memory.GIB  # 1.56B parameters x 16 bytes = 25 GB before activations
    fits = memory.levers(xl, 8, 256, "fp32", 12 * memory.GIB)
    assert fits and all("--lora-rank 16" in f for f in fits)  # only LoRA gets gpt2-xl under 12 GiB
    small = official_config("gpt2")
    limit = (memory.plan(small, 8, 256).total + memory.plan(small, 4, 256).total) / 2  # half the batch fits
    fits = memory.levers(small, 8, 256, "fp32", limit)
    assert fits[0].startswith("--batch-size 4 --grad-accum 2")  # the cheapest lever first: the same step, less memory


def test_plan_flag_prints_the_breakdown_and_trains_nothing(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_records(60, seed=3)))
    args = ["--model", "tiny", "--data", str(data), "--out", str(tmp_path / "runs"), "--wandb", "disabled",
            "--no-progress", "--tiny-vocab", "300", "--name", "p"]
    assert train_main(args + ["--plan", "--lora-rank", "4"]) == 0
    out = capsys.readouterr().out
    assert "memory plan: ~" in out and all(f"  {part}" in out for part in ("weights", "gradients", "activations"))
    assert "time: ~" in out and not (tmp_path / "runs" / "p").exists()


def test_plan_flag_with_keep_freed_memory_adds_what_the_allocator_keeps(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_records(60, seed=3)))
    args = ["--model", "tiny", "--data", str(data), "--out", str(tmp_path / "runs"), "--wandb", "disabled",
            "--no-progress", "--tiny-vocab", "300", "--name", "p", "--plan"]
    peaks = []
    for extra in ([], ["--keep-freed-memory"]):
        assert train_main(args + extra) == 0
        out = capsys.readouterr().out
        peaks.append(float(re.search(r"peak\s+([\d.]+) GiB", out).group(1)))
        assert ("  kept" in out) == bool(extra)
    assert peaks[1] == pytest.approx(peaks[0] * (1 + memory.KEPT_SHARE), abs=0.011)  # the breakdown's 2 decimals


def test_keep_freed_memory_is_set_by_a_training_run_and_not_by_a_plan(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)  # this process stays as is
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_records(60, seed=3)))
    args = ["--model", "tiny", "--data", str(data), "--out", str(tmp_path / "runs"), "--wandb", "disabled",
            "--no-progress", "--tiny-vocab", "300", "--keep-freed-memory"]
    assert train_main(args + ["--plan"]) == 0 and calls == []  # a plan trains nothing, touches nothing
    one_step = ["--max-steps", "1", "--eval-every", "0", "--final-eval", "0"]
    assert train_main(args + one_step + ["--name", "kept"]) == 0 and calls == [1]
    assert train_main(args[:-1] + one_step + ["--name", "default"]) == 0 and calls == [1]  # off by default


KEEP_PROBE = """
import resource, sys, torch
from minisft import memory
if sys.argv[1] == "keep":
    assert memory.keep_freed_memory()
def faults_of_a_fresh_64_mib_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)  # 64 MiB, written and freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(min(faults_of_a_fresh_64_mib_tensor() for _ in range(8)))  # the heap settles after a few (alignment)
"""


def test_keep_freed_memory_without_glibc_warns_and_changes_nothing(monkeypatch):
    import ctypes

    def no_libc(*args, **kwargs):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    with pytest.warns(UserWarning, match="needs glibc"):
        assert memory.keep_freed_memory() is False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="glibc's allocator on Linux")
def test_keep_freed_memory_makes_the_next_big_tensor_reuse_mapped_pages():
    """In a fresh process (mallopt changes the allocator for good): with glibc's defaults a freed 64 MiB tensor
    goes back to the system and every next one faults in all 16,384 of its pages again; kept, once the heap has
    settled, none."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    faults = {mode: int(subprocess.run([sys.executable, "-c", KEEP_PROBE, mode], capture_output=True, text=True,
                                       check=True, cwd=root).stdout) for mode in ("default", "keep")}
    assert faults["default"] > 10_000 and faults["keep"] < 1_000, faults


def test_a_run_over_free_memory_stops_before_loading_the_weights(tmp_path, monkeypatch, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_records(60, seed=3)))
    monkeypatch.setattr(memory, "free_memory", lambda device: 0.45 * memory.GIB)
    loaded = []
    monkeypatch.setattr("minisft.training.load_or_build_model", lambda *a, **k: loaded.append(a))
    assert train_main(["--model", "tiny", "--data", str(data), "--out", str(tmp_path), "--wandb", "disabled",
                       "--no-progress", "--tiny-vocab", "300", "--batch-size", "16"]) != 0
    err = capsys.readouterr().err
    assert re.search(r"needs ~[\d.]+ GiB and cpu has 0.5 GiB free\. What fits: --batch-size 4 --grad-accum 4 "
                     r"\(the same step\)", err)
    assert not loaded  # refused before the model was built (or, for gpt2, downloaded)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_plans_activation_bytes_are_what_backward_keeps(dtype):
    """ACT_BYTES and ATTN_BYTES are counted, not guessed: the tensors autograd saves for one more block."""
    def saved_bytes(n_layer, B=4, T=32):
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=n_layer, n_head=4, n_embd=128, n_positions=64, vocab_size=256, dropout=0.1))
        model.train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen = {}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        ids = torch.randint(0, 256, (B, T))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
                SFTObjective(model)(ids, ids, torch.ones(B))
        copies = 12 * 128 * 128 * 2 * n_layer if dtype == "bf16" else 0  # autocast's weight copies: planned apart
        return sum(seen.values()) - copies
    per_block = (saved_bytes(2) - saved_bytes(1)) / (4 * 32)
    planned = memory.ACT_BYTES[dtype] * 128 + memory.ATTN_BYTES * 4 * 32
    assert per_block == pytest.approx(planned, rel=0.1)

"""Smoke tests of the bench scripts: their core functions at a tiny size, so the benchmarks can't rot.

The speed figures themselves are not asserted (they depend on the machine); what is asserted is that both sides
of the training bench do the same work (same tokens, same masked loss), and that every script runs end to end.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gpu_train  # noqa: E402
import sample_speed  # noqa: E402
import sizes  # noqa: E402
import train_speed as ts  # noqa: E402

from minisft.fast_head import head_loss_sums  # noqa: E402
from minisft.loss import IGNORE  # noqa: E402
from minisft.model import GPT  # noqa: E402
from minisft.pretrained import load_model  # noqa: E402


def test_synthetic_examples_are_tweet_shaped_with_masked_prompts():
    examples = ts.synthetic_examples(50, vocab=100, seed=0)
    assert all(40 <= len(e.input_ids) <= 110 and len(e.targets) == len(e.input_ids) for e in examples)
    for e in examples:
        n_masked = sum(t == IGNORE for t in e.targets)
        assert 9 <= n_masked <= 29 and all(t != IGNORE for t in e.targets[n_masked:])  # prompt first, then targets
    assert ts.synthetic_examples(50, vocab=100, seed=0) == examples


def test_transformers_side_computes_the_same_loss_as_ours_on_the_same_batch(tmp_path):
    config = ts.shape_config("test", dropout=0.0)
    torch.manual_seed(0)
    hf = ts.hf_model(config).eval()
    hf.save_pretrained(tmp_path)
    ours = load_model(str(tmp_path)).eval()
    examples = ts.synthetic_examples(6, vocab=config.vocab_size, seed=1)
    idx = [0, 3, 5]
    batch = ts.hf_batch(examples, idx)
    assert int(batch["attention_mask"].sum()) == ts.real_tokens(examples, idx) + len(idx)  # + the shifted-off eos
    with torch.no_grad():
        theirs = hf(**batch).loss
        mb = ts.D.collate([examples[i] for i in idx], pad_id=0)
        s = head_loss_sums(ours.hidden_states(mb["input_ids"]), ours.lm_head.weight, mb["targets"], mb["weights"])
    assert s.tokens == int((batch["labels"] != IGNORE).sum())
    torch.testing.assert_close(s.weighted / s.weight, theirs, rtol=1e-5, atol=1e-5)


def test_model_flops_counts_the_parameters_of_the_model():
    config = ts.shape_config("test", dropout=0.0)
    model = GPT(config)
    assert ts.n_params_without_wpe(config) == model.num_params() - model.transformer.wpe.weight.numel()
    N, L, C = ts.n_params_without_wpe(config), config.n_layer, config.n_embd
    assert ts.model_flops(config, [3]) == 6 * N * 3 + 12 * L * C * (1 + 2 + 3)


@pytest.mark.parametrize("side", ["hf", "ours"])
def test_measure_runs_each_side_and_reports_tokens_memory_and_losses(side):
    spec = dict(side=side, shape="test", dtype="fp32", data="synthetic", batch=4, steps=2, warmup=1, repeats=1,
                dropout=0.0, seed=0, threads=None, levers=ts.default_levers())
    r = ts.measure(spec)
    assert r["tokens_per_window"] == ts.real_tokens(ts.synthetic_examples(12, 256, 0)[4:], range(8))
    assert r["tokens_per_s"] > 0 and r["peak_mib"] >= r["baseline_mib"] > 0
    assert len(r["losses"]) == 3 and all(5 < x < 6 for x in r["losses"])  # ln(256) = 5.55 at initialisation


@pytest.mark.parametrize("lever", ["group", "targets_only", "chunked_head", "fused_adamw", "pack"])
def test_each_lever_can_be_switched(lever):
    levers = ts.default_levers()
    levers[lever] = not levers[lever]
    spec = dict(side="ours", shape="test", dtype="bf16", data="synthetic", batch=4, steps=2, warmup=0, repeats=1,
                dropout=0.0, seed=0, threads=None, levers=levers)
    r = ts.measure(spec)
    assert r["tokens_per_s"] > 0 and all(5 < x < 6 for x in r["losses"])


def test_peaks_helpers_measure_something_and_spread_reads_median_and_range():
    import peaks

    assert peaks.copy_bandwidth(mib=8, repeats=1) > 0 and sample_speed.bandwidth_gbs(mib=8, repeats=1) > 0
    assert peaks.spread([3.0, 1.0, 2.0], unit="x") == "2.00x [1.00-3.00]"  # median, then the range
    assert peaks.spread([1.5]) == "1.50"
    assert "fp32 12 GFLOP/s, bf16 34 GFLOP/s; copy bandwidth 5.0 GB/s" in peaks.machine_line(
        {"fp32": 12.0, "bf16": 34.0}, 5.0)


def test_train_speed_command_line_end_to_end(capsys, monkeypatch):
    monkeypatch.setattr(ts, "matmul_peaks", lambda: {"fp32": 1.0, "bf16": 2.0})  # the probes take seconds
    monkeypatch.setattr(ts, "copy_bandwidth", lambda: 10.0)
    assert ts.main(["--shapes", "test", "--dtypes", "fp32", "--steps", "1", "--warmup", "0", "--repeats", "1",
                    "--rounds", "2", "--check-steps", "0"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("test  fp32"))
    assert row.count("[") == 3 and row.rstrip().endswith("x")  # two sides' tok/s and the speed: median [range]
    assert "2 rounds, interleaved" in out and "ours in fp32" in out.splitlines()[-1]


def test_sample_speed_core_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sample_speed.SHAPES, "test", ts.SHAPES["test"])
    hf, ours = sample_speed.build("test", tmp_path)
    mine, theirs = sample_speed.run_pair(hf, ours, batch=2, prompt_len=4, new=3, repeats=1)
    assert mine > 0 and theirs > 0


def test_sample_speed_command_line_with_levers(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sample_speed.SHAPES, "test", ts.SHAPES["test"])
    monkeypatch.setattr(sample_speed, "matmul_peaks", lambda: {"fp32": 1.0, "bf16": 2.0})  # the probes take seconds
    monkeypatch.setattr(sample_speed, "copy_bandwidth", lambda: 10.0)
    out_json = tmp_path / "s.json"
    assert sample_speed.main(["--shapes", "test", "--batches", "1,2", "--new-tokens", "2", "--prompt-len", "3",
                              "--repeats", "2", "--levers", "plain,int8", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "copy bandwidth 10.0 GB/s" in out and out.count("lever plain:") == 2 and out.count("lever int8:") == 2
    cells = json.loads(out_json.read_text())["cells"]
    assert [c["batch"] for c in cells] == [1, 2]
    assert all(len(r) == 2 for c in cells for r in c["tokens_per_s"].values())  # one figure per round


def test_int8_lever_is_close_to_the_linear_it_replaces():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(5, 64)
    q = sample_speed.Int8WeightOnly(linear)
    assert q.q.dtype == torch.int8 and q.q.shape == (96, 64)
    with torch.no_grad():
        ref, got = linear(x), q(x.bfloat16()).float()
    assert float((got - ref).norm() / ref.norm()) < 0.02  # int8 rounding + bf16 activations


def test_gpu_train_runs_on_cpu_packed_and_unpacked(tmp_path, capsys):
    for pack in ("--pack", "--no-pack"):
        assert gpu_train.main(["--device", "cpu", "--dtype", "fp32", "--shapes", "test", "--steps", "2",
                               "--warmup", "1", "--batch", "2", pack, "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("tok/s") == 2 and "MFU" in out


def test_step_parts_measures_the_optimizer_memory_and_profile(capsys):
    import step_parts

    assert step_parts.main(["--shape", "test", "--steps", "1", "--top", "3", "--no-peak"]) == 0
    out = capsys.readouterr().out
    assert "AdamW update: foreach" in out and "fresh copy" in out
    busiest, shares = out.split("where the bf16 step's time goes")
    assert busiest.count("ms/step") == 3  # the three busiest operators, each with its time per step
    kinds = [line.split("  ")[1].strip() for line in shares.splitlines() if line.endswith("%")]
    assert "matmuls" in kinds and "the rest" in kinds and "model FLOPs / matmul time" in shares
    assert abs(sum(float(line.rsplit(None, 1)[1][:-1]) for line in shares.splitlines() if line.endswith("%"))
               - 100) < 0.5  # the shares add up to the whole


def test_cache_growth_runs_both_settings_and_reports_peaks(capsys):
    import cache_growth

    assert cache_growth.main(["--steps", "2", "--shape", "test"]) == 0
    out = capsys.readouterr().out
    assert "capped at 16" in out and "PyTorch's default (1024)" in out
    r = cache_growth.worker("test", 2)  # in this process: one peak per step, never falling
    assert len(r["peaks"]) == 2 and r["peaks"][0] <= r["peaks"][1]


def test_sizes_measures_a_row_beside_its_plan(tmp_path, capsys):
    out = tmp_path / "sizes.json"
    assert sizes.main(["--shapes", "gpt2", "--rows", "LoRA r16 + ckpt", "--steps", "2", "--batch", "1", "--seq", "16",
                       "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["fits"] and row["step_s"] > 0 and row["plan_s"] > 0
    # gpt2 with a bf16 base is ~0.3 GiB of weights, and the process holds them: the plan is in the measured range
    assert 0.3 * 1024**3 < row["peak"] and 0.67 < row["plan"] / row["peak"] < 1.5
    assert "| gpt2 | LoRA r16 + ckpt |" in capsys.readouterr().out


def test_decode_parts_reports_each_layout_and_the_step(capsys, monkeypatch):
    import decode_parts

    monkeypatch.setitem(decode_parts.SHAPES, "test", ts.SHAPES["test"])
    monkeypatch.setattr(decode_parts, "copy_bandwidth", lambda: 10.0)
    assert decode_parts.main(["--shape", "test", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "plain bf16 nn.Linear" in out and "int8 weight-only" in out and out.count("GB/s of weights") >= 2
    assert "one step of the model" in out and "choose_next" in out

"""The training loop end to end on the tiny model: resume, faults, precision paths, DDP, W&B, overfitting."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minisft import data as D
from minisft import records as R
from minisft.config import parse_args
from minisft.objective import SFTObjective
from minisft.optimizer import make_optimizer
from minisft.precision import pick_precision
from minisft.pretrained import build_tiny, load_model
from minisft.templates import prompt_format
from minisft.training import TrainingError, accumulate_gradients, main, train_step
from minisft.tweets.datagen import generate_records

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """A small slice of the synthetic set: enough for a few steps of a few batches."""
    path = tmp_path_factory.mktemp("data") / "tweets.jsonl"
    with open(path, "w") as f:
        for r in generate_records(240, seed=1):
            f.write(json.dumps(r) + "\n")
    return path


def base_args(data_file, out, *extra):
    return ["--model", "tiny", "--data", str(data_file), "--out", str(out), "--batch-size", "8", "--tiny-vocab",
            "512", "--eval-every", "0", "--eval-samples", "1", "--wandb", "disabled", "--no-progress",
            "--max-len", "96", "--final-eval", "0", *extra]


def losses(run_dir):
    rows = [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]
    return [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]


def final_weights(run_dir):
    latest = (Path(run_dir) / "latest").read_text().strip()
    return load_file(Path(run_dir) / latest / "model.safetensors")


def test_resume_is_bit_identical(data_file, tmp_path):
    assert main(base_args(data_file, tmp_path, "--name", "straight", "--max-steps", "6", "--save-every", "0")) == 0
    assert main(base_args(data_file, tmp_path, "--name", "split", "--max-steps", "6", "--stop-after", "3")) == 0
    assert (tmp_path / "split" / "latest").read_text().strip() == "checkpoints/step-0000003"
    assert main(["--resume", str(tmp_path / "split"), "--wandb", "disabled", "--no-progress"]) == 0
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert [s for s, _ in split] == list(range(1, 7))
    assert split == straight  # exactly equal floats, step by step
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_accumulation_trains_on_the_same_steps_as_a_large_batch(data_file, tmp_path):
    """--batch-size 4 --grad-accum 2 sees exactly the examples of each --batch-size 8 step: same losses."""
    assert main(base_args(data_file, tmp_path, "--name", "big", "--max-steps", "3", "--save-every", "0")) == 0
    assert main(base_args(data_file, tmp_path, "--name", "acc", "--max-steps", "3", "--save-every", "0",
                          "--batch-size", "4", "--grad-accum", "2")) == 0
    big, acc = losses(tmp_path / "big"), losses(tmp_path / "acc")
    assert [s for s, _ in acc] == [1, 2, 3]
    assert [v for _, v in acc] == pytest.approx([v for _, v in big], rel=1e-5)


def test_run_folder_is_complete_and_loadable_by_transformers(data_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    assert main(base_args(data_file, tmp_path, "--name", "r", "--max-steps", "2", "--eval-every", "1",
                          "--keep-last", "1", "--save-every", "1", "--final-eval", "2")) == 0
    run = tmp_path / "r"
    for name in ("run_config.json", "metrics.jsonl", "samples.jsonl", "latest", "eval.json", "eval_samples.jsonl"):
        assert (run / name).exists(), name
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step-0000002"]  # keep-last 1 pruned step 1
    ckpt = run / "checkpoints" / "step-0000002"
    assert {"config.json", "model.safetensors", "tokenizer.json", "template.json", "state.pt"} <= {
        p.name for p in ckpt.iterdir()}
    assert not any("_orig_mod" in k or k.startswith("module.") for k in load_file(ckpt / "model.safetensors"))
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(ckpt, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ours = load_model(ckpt).eval()
    x = torch.randint(0, 512, (2, 12))
    assert torch.allclose(ours(x), hf.eval()(x).logits, atol=1e-4)
    metrics = [json.loads(line) for line in open(run / "metrics.jsonl")]
    evals = [m for m in metrics if "val/loss" in m]
    assert evals and all(m["val/ppl"] > 1 and "val/loss_unweighted" in m for m in evals)
    sample = json.loads(open(run / "samples.jsonl").readline())
    assert {"instruction", "text", "chars", "expected_likes"} <= set(sample)


def test_bad_flag_combinations_fail_before_any_work(capsys):
    for argv in (["--batch-size", "0"], ["--lr", "-1"], ["--weights", "none", "--max-weight", "3"],
                 ["--max-steps", "5", "--warmup", "5"], ["--resume", "x", "--name", "y"]):
        with pytest.raises(SystemExit) as e:
            parse_args(argv)
        assert e.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


def test_unknown_data_file_is_one_clear_line(tmp_path, capsys):
    assert main(["--model", "tiny", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path),
                 "--wandb", "disabled"]) == 1
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "Traceback" not in err


def tiny_setup(data_file, n=None, seed=0):
    records, _ = R.load_records(data_file)
    records = records[:n] if n else records
    model, tok = build_tiny([r["instruction"] + " " + r["response"] for r in records], seed=seed, vocab_size=512)
    examples, _ = D.encode_records(tok, records, prompt_format("plain"), 160)  # no example cut: all learnable
    return model, tok, records, examples


def test_nan_loss_stops_with_a_clear_message(data_file):
    model, tok, _, examples = tiny_setup(data_file, 16)
    with torch.no_grad():
        model.transformer.wte.weight[5, 0] = float("nan")
        model.transformer.wte.weight[:, 0] = float("nan")
    objective = SFTObjective(model)
    opt = make_optimizer(model, 1e-3, 0.1, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingError, match="loss became nan"):
        train_step(objective, [D.collate(examples[:4], tok.eos_id)], opt, pick_precision(torch.device("cpu")),
                   1e-3, 1.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k], ) or torch.isnan(before[k]).any() for k in before)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_paths_on_cpu(data_file, dtype):
    """bf16 autocast, and fp16 with the GradScaler (scale, unscale before clipping, step, update)."""
    model, tok, _, examples = tiny_setup(data_file, 16)
    precision = pick_precision(torch.device("cpu"), dtype)
    assert (precision.scaler is not None) == (dtype == "fp16")
    objective = SFTObjective(model)
    opt = make_optimizer(model, 1e-3, 0.1, torch.device("cpu"))
    batch = [D.collate(examples[:4], tok.eos_id)]  # small: CPUs have no fast fp16 matmul
    first = train_step(objective, batch, opt, precision, 1e-3, 1.0)
    for _ in range(3):
        last = train_step(objective, batch, opt, precision, 1e-3, 1.0)
    assert last["train/loss"] < first["train/loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    if dtype == "fp16":
        assert precision.state_dict()["scale"] > 0


def test_overfit_eight_examples_then_greedy_reproduces_and_stops(data_file):
    from minisft.sampling import generate
    from minisft.templates import render_prompt

    torch.manual_seed(0)
    model, tok, records, examples = tiny_setup(data_file, 8)
    objective = SFTObjective(model)
    opt = make_optimizer(model, 3e-3, 0.0, torch.device("cpu"))
    precision = pick_precision(torch.device("cpu"))
    batch = [D.collate(examples, tok.eos_id)]
    for _ in range(150):
        metrics = train_step(objective, batch, opt, precision, 3e-3, 1.0)
    assert metrics["train/loss"] < 0.05
    model.eval()
    prompts = [tok.encode(render_prompt("plain", r["instruction"])) for r in records]
    outs = generate(model, prompts, max_new_tokens=120, temperature=0, eos_id=tok.eos_id)
    for r, out, ex in zip(records, outs, examples):
        assert tok.decode(out).strip() == r["response"].strip()
        assert len(out) < 120  # it stopped at end-of-text by itself


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out):
    import torch.distributed as dist

    from tests.test_loss import collate, make_examples, tiny_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.nn.parallel import DistributedDataParallel as DDP

    examples = make_examples(8)
    model = tiny_model(0)
    micro = [collate(examples[i:i + 2]) for i in range(0, 8, 2)]  # 4 micro-batches: 2 per process
    mine = micro[rank * 2:(rank + 1) * 2]
    metrics = accumulate_gradients(DDP(SFTObjective(model)), mine, pick_precision(torch.device("cpu"), "fp32"))
    if rank == 0:
        torch.save({"metrics": metrics, "grads": {n: p.grad for n, p in model.named_parameters()}}, out)
    dist.destroy_process_group()


def test_ddp_two_processes_equal_one_process(tmp_path):
    from tests.test_loss import grads_for, make_examples

    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    want_metrics, want = grads_for(make_examples(8), 8)
    assert got["metrics"]["train/loss"] == pytest.approx(want_metrics["train/loss"], rel=1e-6)
    for name in want:
        assert torch.allclose(got["grads"][name], want[name], atol=1e-6, rtol=1e-4), name


def test_sigint_saves_and_exits_zero(data_file, tmp_path):
    cmd = [sys.executable, "train.py", *base_args(data_file, tmp_path, "--name", "s", "--max-steps", "100000",
                                                   "--save-every", "0", "--batch-size", "2")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(losses(tmp_path / "s")) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    done = losses(tmp_path / "s")[-1][0]
    assert (tmp_path / "s" / "latest").read_text().strip() == f"checkpoints/step-{done:07d}"
    assert "--resume" in out


KILL_DURING_SAVE = r"""
import sys, time, torch
from pathlib import Path
import minisft.checkpoint as C
from minisft.pretrained import build_tiny
run = Path(sys.argv[1])
model, tok = build_tiny(["hello world tweet", "another tweet here"] * 20, vocab_size=300)
C.save_checkpoint(run, 1, model, tok, "plain", {"step": 1})
real_save = torch.save
def slow_save(obj, path, *a, **k):
    real_save(obj, path, *a, **k)
    Path(sys.argv[2]).write_text("saving")
    time.sleep(60)  # killed here, in the middle of writing step 2
C.torch.save = slow_save
C.save_checkpoint(run, 2, model, tok, "plain", {"step": 2})
"""


def test_sigkill_during_save_leaves_previous_checkpoint(tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_SAVE, str(tmp_path / "run"), str(marker)], cwd=ROOT)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from minisft.checkpoint import load_train_state
    from minisft.runs import latest_checkpoint

    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "step-0000001"
    assert load_train_state(ckpt)["step"] == 1
    load_model(ckpt)  # the weights load


def read_wandb_records(path):
    """Records of an offline .wandb file: a 7-byte ':W&B' header, then LevelDB-log blocks of 32 KiB."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, records, pending = Path(path).read_bytes(), 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending, pos = pending + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4) and pending:  # FULL or LAST piece of a record
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_offline_wandb_run_writes_metrics_config_and_samples(data_file, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(base_args(data_file, tmp_path, "--name", "w", "--max-steps", "3", "--eval-every", "2") +
                ["--wandb", "offline"]) == 0
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    deadline = time.time() + 30  # wandb's writer is another process: wait for the run's closing record
    while not any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(runs[0])):
        assert time.time() < deadline, "the offline W&B run was never closed"
        time.sleep(0.5)
    history = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
               for r in read_wandb_records(runs[0]) if r.WhichOneof("record_type") == "history"]
    logged = {int(h["_step"]): float(h["train/loss"]) for h in history if "train/loss" in h}
    assert logged == pytest.approx(dict(losses(tmp_path / "w")))
    assert any("val/loss" in h for h in history)
    assert any(k.startswith("samples/") for h in history for k in h)
    tables = list(runs[0].parent.glob("files/media/table/samples_*.table.json"))
    assert tables and "expected_likes" in json.loads(tables[0].read_text())["columns"]


def test_readme_main_command_runs_end_to_end(tmp_path, data_file):
    """`python train.py` on the tiny model, fewer steps; then sample.py picks the run up."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    out = subprocess.run([sys.executable, "train.py", "--data", str(data_file), "--out",
                          str(tmp_path / "runs"), "--max-steps", "4", "--wandb", "disabled", "--no-progress",
                          "--tiny-vocab", "512", "--final-eval", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "training the offline `tiny` model instead" in out.stdout  # gpt2 can't be had offline: one clear line
    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "run_config.json").read_text())
    assert config["condition"] in ("auto", "predicted") and config["weights"] == "none"  # the experiment's row
    assert (run / (run / "latest").read_text().strip() / "template.json").read_text().count("top 20%")
    s = subprocess.run([sys.executable, "sample.py", "--model", str(next((tmp_path / "runs").iterdir())),
                        "--prompt", "Write a witty tweet about debugging", "--max-new-tokens", "20"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert s.returncode == 0, s.stderr
    assert "chars" in s.stdout


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_follows_the_models_size_and_the_cpu(data_file, tmp_path, capsys, monkeypatch, has_bf16):
    """`--dtype auto` is decided once the model exists: here the size bar is lowered to the tiny model's."""
    from minisft import precision as P

    monkeypatch.setattr(P, "BF16_MIN_PARAMS", 0)
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: has_bf16)
    assert main(base_args(data_file, tmp_path / "runs", "--max-steps", "1")) == 0
    assert ("(bf16)" if has_bf16 else "(fp32)") in capsys.readouterr().out


def test_tiny_trains_six_epochs_by_default_and_the_config_says_so(data_file, tmp_path):
    args = base_args(data_file, tmp_path, "--name", "d")
    assert "--max-steps" not in args
    assert main(args) == 0
    config = json.loads((tmp_path / "d" / "run_config.json").read_text())
    assert config["epochs"] == 6.0 and config["lr"] == 2e-3
    steps = [s for s, _ in losses(tmp_path / "d")]
    per_epoch = int(json.loads((tmp_path / "d" / "metrics.jsonl").read_text().splitlines()[0])["data/train_examples"]
                    // 8)  # --batch-size 8 in base_args; a last, smaller step is left out of each epoch
    assert steps[-1] == 6 * per_epoch

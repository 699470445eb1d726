"""Loading official-layout weights (Hub cache or folder), saving Hugging Face folders, and the errors in between."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from minisft.model import GPT, KVCache, official_config, tiny_config
from minisft.pretrained import (
    CheckpointError,
    ModelNotAvailable,
    build_tiny,
    config_from_hf,
    config_to_hf,
    load_model,
    load_tokenizer,
    resolve,
    save_model,
)

REV_A, REV_B = "a" * 40, "b" * 40


def copy_folder(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def logits(model, vocab, seed=0):
    idx = torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(idx)
    return getattr(out, "logits", out)


def rewrite_weights(folder, edit):
    """Load folder/model.safetensors as a dict, let `edit` change it, write it back."""
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


# --------------------------------------------------------------------------------------------- official configs

@pytest.mark.parametrize("name, layers, heads, width, params", [
    ("gpt2", 12, 12, 768, 124_439_808),
    ("gpt2-medium", 24, 16, 1024, 354_823_168),
    ("gpt2-large", 36, 20, 1280, 774_030_080),
    ("gpt2-xl", 48, 25, 1600, 1_557_611_200),
])
def test_official_configs(name, layers, heads, width, params):
    config = official_config(name)
    assert (config.n_layer, config.n_head, config.n_embd, config.n_positions) == (layers, heads, width, 1024)
    with torch.device("meta"):  # shapes only: instant, no memory
        assert GPT(config).num_params() == params
    assert config_from_hf(config_to_hf(config)) == config


def test_config_mapping_from_a_published_style_config():
    # openai-community/gpt2's config.json, abridged: n_ctx next to n_positions, dropout 0.1 under three names.
    hf = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
          "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "layer_norm_epsilon": 1e-05,
          "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
          "resid_pdrop": 0.1, "vocab_size": 50257}
    config = config_from_hf(hf)
    assert config == dataclasses.replace(official_config("gpt2"), dropout=0.1)
    del hf["n_positions"]
    assert config_from_hf(hf).n_positions == 1024  # n_ctx alone is enough


@pytest.mark.parametrize("field, value", [("activation_function", "relu"), ("n_inner", 100),
                                          ("scale_attn_by_inverse_layer_idx", True), ("model_type", "llama"),
                                          ("tie_word_embeddings", False)])
def test_config_refuses_what_the_module_cannot_do(field, value):
    hf = config_to_hf(tiny_config(100))
    hf[field] = value
    with pytest.raises(CheckpointError, match=f"my_config.json: field '{field}'"):
        config_from_hf(hf, source="my_config.json")


def test_config_with_a_missing_field_or_bad_json(tmp_path):
    hf = config_to_hf(tiny_config(100))
    del hf["n_embd"]
    with pytest.raises(CheckpointError, match="field 'n_embd' is missing"):
        config_from_hf(hf)
    (tmp_path / "config.json").write_text('{"n_layer": 2,\n "n_head": }')
    with pytest.raises(CheckpointError, match=r"config.json: line 2: not valid JSON"):
        load_model(tmp_path)


# ---------------------------------------------------------------------------------------------------- round trip

def test_save_model_loads_in_transformers_with_same_logits(small_hf_folder, tmp_path):
    from transformers import GPT2LMHeadModel

    ours = load_model(small_hf_folder)
    save_model(ours, tmp_path)
    ref, info = GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    vocab = ours.config.vocab_size
    assert (logits(ref.eval(), vocab) - logits(ours, vocab)).abs().max() <= 1e-4
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]  # no temp file left behind
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys and all(k.startswith("transformer.") for k in keys)  # tied: stored once
    assert load_file(tmp_path / "model.safetensors")["transformer.h.0.mlp.c_fc.weight"].shape == (64, 256)  # Conv1D


def test_transformers_pipeline_generates_what_we_generate(small_hf_folder, tmp_path, small_tokenizer):
    from transformers import pipeline

    ours = load_model(small_hf_folder)
    save_model(ours, tmp_path)
    small_tokenizer.save(tmp_path)
    prompt = small_tokenizer.encode("hot take: tabs")
    out = pipeline("text-generation", model=str(tmp_path), device="cpu")(
        "hot take: tabs", max_new_tokens=8, do_sample=False, return_tensors=True)
    theirs = out[0]["generated_token_ids"][len(prompt):]
    # Our own greedy decoding with the KV cache, stopping at end of text as generate() does.
    cache, ids, mine = KVCache(ours.config, 1, 64), torch.tensor([prompt]), []
    with torch.no_grad():
        for _ in range(8):
            nxt = int(ours(ids, cache=cache)[0, -1].argmax())
            mine.append(nxt)
            if nxt == small_tokenizer.eos_id:
                break
            ids = torch.tensor([[nxt]])
    assert list(theirs) == mine


def test_compiled_model_saves_without_orig_mod_prefix(small_hf_folder, tmp_path):
    ours = load_model(small_hf_folder)
    compiled = torch.compile(ours)  # wrapping only; nothing compiles until it is called
    assert hasattr(compiled, "_orig_mod")
    save_model(compiled, tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "_orig_mod" in k]
    assert torch.equal(load_model(tmp_path).transformer.wte.weight, ours.transformer.wte.weight)


def test_save_refuses_an_untied_model(tmp_path):
    model = GPT(tiny_config(50))
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    with pytest.raises(ValueError, match="no longer tied"):
        save_model(model, tmp_path)


def test_tied_after_loading_a_folder_with_lm_head(small_hf_folder, tmp_path):
    folder = copy_folder(small_hf_folder, tmp_path / "with_lm_head")
    rewrite_weights(folder, lambda t: t.__setitem__("lm_head.weight", t["transformer.wte.weight"].clone()))
    model = load_model(folder)
    assert model.lm_head.weight is model.transformer.wte.weight
    plain = load_model(small_hf_folder)  # and without one (transformers' files omit it)
    assert plain.lm_head.weight is plain.transformer.wte.weight
    rewrite_weights(folder, lambda t: t["lm_head.weight"].add_(1.0))
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'lm_head.weight' differs from wte"):
        load_model(folder)


def test_sharded_checkpoint(small_hf_folder, tmp_path):
    tensors = load_file(small_hf_folder / "model.safetensors")
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[:10], "model-00002-of-00002.safetensors": keys[10:]}
    for name, part in shards.items():
        save_file({k: tensors[k] for k in part}, tmp_path / name, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_bytes((small_hf_folder / "config.json").read_bytes())
    vocab = load_model(small_hf_folder).config.vocab_size
    assert torch.equal(logits(load_model(tmp_path), vocab), logits(load_model(small_hf_folder), vocab))
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lists shard model-00002-of-00002.safetensors, which is missing"):
        load_model(tmp_path)


# ---------------------------------------------------------------------------------------------------- bad files

def test_truncated_file_names_file_and_tensor(small_hf_folder, tmp_path):
    folder = copy_folder(small_hf_folder, tmp_path / "cut")
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 1000)
    with pytest.raises(CheckpointError, match=r"cut/model.safetensors: .*truncated: tensor 'transformer\.[\w.]+'"):
        load_model(folder)


def test_garbage_file_is_a_clear_error(tmp_path, small_hf_folder):
    (tmp_path / "config.json").write_bytes((small_hf_folder / "config.json").read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"<html>not found</html>")
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        load_model(tmp_path)


def test_missing_tensor_is_named(small_hf_folder, tmp_path):
    folder = copy_folder(small_hf_folder, tmp_path / "m")
    rewrite_weights(folder, lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"))
    with pytest.raises(CheckpointError, match=r"tensor 'h.1.mlp.c_fc.bias' missing from model.safetensors"):
        load_model(folder)


def test_wrong_shape_is_named(small_hf_folder, tmp_path):
    folder = copy_folder(small_hf_folder, tmp_path / "s")
    rewrite_weights(folder, lambda t: t.__setitem__("transformer.h.0.attn.c_attn.weight", torch.zeros(192, 64)))
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'transformer.h.0.attn.c_attn.weight' "
                                              r"has shape \[192, 64\], but config.json implies \[64, 192\]"):
        load_model(folder)


@pytest.mark.parametrize("field, value, message", [
    ("n_embd", 96, r"model.safetensors: tensor 'transformer.[\w.]+' has shape .* but config.json implies .*n_embd=96"),
    ("n_layer", 3, r"tensor 'h.2.ln_1.weight' and 11 more missing from model.safetensors .*n_layer=3"),
    ("n_layer", 1, r"model.safetensors: unexpected tensor 'transformer.h.1.[\w.]+': config.json says n_layer=1"),
    ("vocab_size", 1000, r"tensor 'transformer.wte.weight' has shape \[\d+, 64\], but config.json implies"),
])
def test_config_disagreeing_with_weights(small_hf_folder, tmp_path, field, value, message):
    folder = copy_folder(small_hf_folder, tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_folder_without_weights_or_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config_to_hf(tiny_config(50))))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="is a file"):
        load_model(tmp_path / "config.json")


# --------------------------------------------------------------------------------------------------------- Hub

@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline. huggingface_hub reads its env vars at import, so patch both."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def lay_out_snapshot(cache, source, revision, branch=None, repo="openai-community/gpt2"):
    """What huggingface_hub leaves after a download: snapshots/<commit>/<files> and refs/<branch> -> commit."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (snapshot / name).write_bytes((source / name).read_bytes())
    if branch:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / branch).write_text(revision)
    return snapshot


def test_hub_name_resolves_through_the_cache(hub_cache, small_hf_folder, tmp_path):
    lay_out_snapshot(hub_cache, small_hf_folder, REV_A, branch="main")
    other = copy_folder(small_hf_folder, tmp_path / "other")
    rewrite_weights(other, lambda t: t["transformer.wte.weight"].mul_(-1))
    lay_out_snapshot(hub_cache, other, REV_B)

    assert resolve("gpt2") == hub_cache / "models--openai-community--gpt2" / "snapshots" / REV_A
    main, pinned = load_model("gpt2"), load_model("gpt2", revision=REV_B)
    assert torch.equal(main.transformer.wte.weight, load_model(small_hf_folder).transformer.wte.weight)
    assert torch.equal(pinned.transformer.wte.weight, -main.transformer.wte.weight)
    assert load_tokenizer("gpt2").encode("hi @bob") == load_tokenizer(small_hf_folder).encode("hi @bob")
    with pytest.raises(ModelNotAvailable, match=r"revision v2\.0\) is not in the Hugging Face cache"):
        load_model("gpt2", revision="v2.0")


def test_nothing_cached_offline_is_one_clear_error(hub_cache):
    with pytest.raises(ModelNotAvailable) as err:
        load_model("gpt2-medium")
    message = str(err.value)
    assert "openai-community/gpt2-medium" in message and str(hub_cache) in message
    assert "HF_HUB_OFFLINE=1" in message and "local folder" in message and "--model tiny" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained traceback to print
    assert err.value.reason == "not cached, and offline mode is on (HF_HUB_OFFLINE=1)"  # for one-line notices


def test_unknown_names_and_tiny(hub_cache):
    with pytest.raises(ModelNotAvailable, match="not a local folder"):
        load_model("no such model")
    with pytest.raises(ModelNotAvailable, match="built from scratch by training"):
        load_model("tiny")


def test_hub_env_vars_are_honoured_in_a_fresh_process(small_hf_folder, tmp_path):
    # The env vars as a user sets them, before huggingface_hub is imported (no monkeypatching of its constants).
    cache = tmp_path / "hf_home" / "hub"  # HF_HOME/hub is where HF_HUB_CACHE defaults to
    lay_out_snapshot(cache, small_hf_folder, REV_A, branch="main")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    code = "from minisft.pretrained import load_model; print(load_model('gpt2').config.n_embd)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "64"


# ---------------------------------------------------------------------------------------------------------- tiny

def test_tiny_param_count_is_the_documented_one():
    with torch.device("meta"):
        assert GPT(tiny_config(4096)).num_params() == 1_350_400


def test_build_tiny_is_seeded_and_round_trips(tricky_tweets, tmp_path):
    model, tokenizer = build_tiny(tricky_tweets, seed=0, vocab_size=4096)
    assert model.config.vocab_size == tokenizer.vocab_size and model.config.eos_token_id == tokenizer.eos_id
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd, model.config.n_positions) == \
        (4, 4, 128, 256)
    again, _ = build_tiny(tricky_tweets, seed=0, vocab_size=4096)
    other, _ = build_tiny(tricky_tweets, seed=1, vocab_size=4096)
    assert torch.equal(model.transformer.h[0].mlp.c_fc.weight, again.transformer.h[0].mlp.c_fc.weight)
    assert not torch.equal(model.transformer.h[0].mlp.c_fc.weight, other.transformer.h[0].mlp.c_fc.weight)

    save_model(model, tmp_path)
    tokenizer.save(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    assert torch.equal(logits(loaded, tokenizer.vocab_size), logits(model.eval(), tokenizer.vocab_size))
    assert load_tokenizer(tmp_path).encode(tricky_tweets[0]) == tokenizer.encode(tricky_tweets[0])

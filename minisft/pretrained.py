"""Official GPT-2 weights in (from the Hugging Face Hub or a local folder), Hugging Face-compatible checkpoints out.

A checkpoint is a folder in the Hugging Face layout: config.json (GPT-2's own keys), model.safetensors (or shards
model-0000x-of-0000y.safetensors + model.safetensors.index.json) and tokenizer.json. Tensors are read with
safetensors, never with pickle: loading a checkpoint cannot run code.

The only real conversion is the orientation of four weight matrices per layer. GPT-2 (and transformers) store
c_attn, c_proj and c_fc as "Conv1D" weights of shape [in, out]; our nn.Linear holds [out, in]. So they are
transposed on the way in and on the way out; every other tensor maps one to one by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from minisft.files import atomic_write, atomic_write_text
from minisft.lora import plain_state
from minisft.model import GPT, OFFICIAL_SHAPES, GPTConfig, official_config, tiny_config, unwrap
from minisft.runs import checkpoint_folder
from minisft.tokenizer import TOKENIZER_FILE, Tokenizer, train_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
OFFICIAL_REPOS = {name: f"openai-community/{name}" for name in OFFICIAL_SHAPES}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Official files carry each layer's causal mask as buffers (h.N.attn.bias, h.N.attn.masked_bias); SDPA builds the
# mask itself, so they are skipped. (attn.c_attn.bias, the q/k/v bias, is a real parameter and does not match.)
MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


class ModelNotAvailable(RuntimeError):
    """The weights are neither in a local folder nor in the Hugging Face cache, and the Hub can't supply them.

    str(e) is the whole message, what to do included; e.reason is its short cause, for one-line notices.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class CheckpointError(ValueError):
    """A checkpoint folder whose files are missing, truncated, or disagree with each other."""


# ---------------------------------------------------------------------------------------------------- finding files

def resolve(name_or_path: str, revision: str | None = None, weights: bool = True) -> Path:
    """A name (`gpt2` ... `gpt2-xl`, or a Hub repo id) or a local folder -> a local folder with the files.

    Hub files go through huggingface_hub into its usual cache, so HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE apply
    and a second run reads the cache without the network. `weights=False` fetches only config + tokenizer.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():  # a local folder wins, even one named like an official model
        return path
    if path.is_file():
        raise CheckpointError(f"{path} is a file: --model takes the folder that holds config.json and "
                              f"{WEIGHTS_FILE}, e.g. {path.parent}")
    if name_or_path == "tiny":
        raise ModelNotAvailable("`tiny` has no published weights: it is built from scratch by training "
                                "(python train.py --model tiny ...); load its checkpoint folder instead.")
    repo_id = OFFICIAL_REPOS.get(name_or_path)
    if repo_id is None and re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path):
        repo_id = name_or_path  # any other Hub repo id, e.g. openai-community/gpt2
    if repo_id is None:
        raise ModelNotAvailable(f"{name_or_path!r} is not a local folder, nor one of {', '.join(OFFICIAL_REPOS)} "
                                "or a Hub repo id (owner/name).")
    return _download(repo_id, revision, weights, name_or_path)


def _download(repo_id: str, revision: str | None, weights: bool, asked: str) -> Path:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{repo_id} (revision {revision or 'main'})"
    try:
        config = Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision))
        # Pin the rest to the exact commit config.json came from, so a push mid-download can't mix two versions.
        commit = config.parent.name

        def get(filename):
            return hf_hub_download(repo_id, filename, revision=commit)

        get(TOKENIZER_FILE)
        if weights:
            try:
                get(WEIGHTS_FILE)
            except EntryNotFoundError:  # no single file (remote 404, or not cached): the sharded form
                index = json.loads(Path(get(INDEX_FILE)).read_text())
                for shard in sorted(set(index["weight_map"].values())):
                    get(shard)
        return config.parent
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ModelNotAvailable(f"{where} was not found on the Hugging Face Hub ({type(e).__name__}). "
                                f"Check the name and revision, or point --model at a local folder.",
                                reason="not found on the Hub") from None
    except RemoteEntryNotFoundError as e:
        raise ModelNotAvailable(f"{where} lacks a file minisft needs: {CONFIG_FILE}, {TOKENIZER_FILE} and "
                                f"safetensors weights in the Hugging Face layout ({e}).") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, ConnectionError, TimeoutError) as e:
        offline = constants.is_offline_mode()
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else \
            "the Hub can't be reached (set HF_HUB_OFFLINE=1 to skip the retries when you know you are offline)"
        raise ModelNotAvailable(
            f"{asked}: {where} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {reason}. "
            f"Either connect to the internet once so it can be downloaded, point --model at a local folder "
            f"with {CONFIG_FILE}, {WEIGHTS_FILE} and {TOKENIZER_FILE}, or use --model tiny to train a small "
            f"model from scratch offline. [{type(e).__name__}]", reason=f"not cached, and {reason}") from None


# ----------------------------------------------------------------------------------------------------------- config

def config_from_hf(hf: dict, source="config.json") -> GPTConfig:
    """A Hugging Face GPT-2 config.json (as a dict) -> GPTConfig; refuse what our module can't reproduce exactly."""
    def need(key, *fallbacks):
        for k in (key, *fallbacks):
            if hf.get(k) is not None:
                return hf[k]
        raise CheckpointError(f"{source}: field {key!r} is missing")

    def refuse(field, value, why):
        raise CheckpointError(f"{source}: field {field!r} = {value!r} is not supported ({why})")

    if hf.get("model_type", "gpt2") != "gpt2":
        refuse("model_type", hf["model_type"], "minisft implements GPT-2 only")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):  # both name the tanh approximation our MLP uses
        refuse("activation_function", act, "minisft's MLP is GELU with the tanh approximation, 'gelu_new'")
    n_embd = int(need("n_embd"))
    if hf.get("n_inner") not in (None, 4 * n_embd):
        refuse("n_inner", hf["n_inner"], f"the MLP width is fixed at 4 * n_embd = {4 * n_embd}")
    for field, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                             ("add_cross_attention", False), ("tie_word_embeddings", True)):
        if hf.get(field, supported) != supported:
            refuse(field, hf[field], f"minisft's GPT-2 needs {supported}")
    config = GPTConfig(
        n_layer=int(need("n_layer")), n_head=int(need("n_head")), n_embd=n_embd,
        n_positions=int(need("n_positions", "n_ctx")),  # old configs carry both, with the same value
        vocab_size=int(need("vocab_size")),
        layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
        dropout=float(hf.get("resid_pdrop", 0.1)),  # one rate for all three; GPT-2 used 0.1 everywhere
        bos_token_id=int(hf.get("bos_token_id") if hf.get("bos_token_id") is not None else 50256),
        eos_token_id=int(hf.get("eos_token_id") if hf.get("eos_token_id") is not None else 50256),
    )
    if config.n_embd % config.n_head:
        refuse("n_head", config.n_head, f"n_embd = {config.n_embd} does not split into {config.n_head} heads")
    return config


def config_to_hf(config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict:
    """GPTConfig -> the config.json that transformers' GPT2LMHeadModel reads (its own key names and defaults)."""
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
        "n_positions": config.n_positions, "n_ctx": config.n_positions, "n_inner": None,
        "vocab_size": config.vocab_size, "layer_norm_epsilon": config.layer_norm_epsilon,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
        "initializer_range": 0.02, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": True, "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def read_config(folder) -> GPTConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return config_from_hf(hf, source=path)


# ---------------------------------------------------------------------------------------------------------- loading

def load_model(name_or_path: str, revision: str | None = None, frozen: tuple[str, ...] = ()) -> GPT:
    """Official GPT-2 or a checkpoint folder -> GPT (eval mode, on the CPU, in the file's dtype), lm_head tied.
    `frozen`: names of block linears (lora.TARGETS) read straight into bf16, tensor by tensor, for a LoRA base
    stored in bf16: gpt2-xl then never holds its 6 GB of float32 weights at once (memory.py plans for 3)."""
    folder = resolve(name_or_path, revision)
    config = read_config(folder)
    # Build on the meta device: shapes only, no memory, no random init. The real tensors are then read one at a
    # time and assigned, so at no point do we hold a random model AND the loaded weights (two full copies).
    with torch.device("meta"):
        model = GPT(config)
    state = read_weights(folder, model, tuple(f".{t}.{p}" for t in frozen for p in ("weight", "bias")))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
    # assign=True swapped in new Parameter objects, which silently unties lm_head from wte: tie them again.
    model.lm_head.weight = model.transformer.wte.weight
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    assert not on_meta, f"not loaded: {on_meta}"
    return model.eval()


def weight_files(folder: Path) -> list[Path]:
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    index = folder / INDEX_FILE
    if not index.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_FILE} (nor a sharded {INDEX_FILE}) in this folder")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({e!r})") from None
    files = [folder / name for name in sorted(set(weight_map.values()))]
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{index}: lists shard {f.name}, which is missing from {folder}")
    return files


def read_weights(folder: Path, model: GPT, to_bf16: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, renamed to our parameter names and checked against the (meta) model."""
    expected = {name: p.shape for name, p in model.named_parameters()}  # tied lm_head.weight appears once, as wte
    state, origin, lm_head = {}, {}, None
    for file in weight_files(folder):
        for key in _keys(file):
            # Official files have bare names (h.0.ln_1.weight); transformers writes transformer.h.0.ln_1.weight.
            bare = key.removeprefix("transformer.")
            if MASK_BUFFER.match(bare):
                continue
            if bare == "lm_head.weight":
                lm_head = (file, key)
                continue
            name = "transformer." + bare
            if name not in expected:
                raise CheckpointError(f"{file}: unexpected tensor {key!r}: {_shape_hint(model.config)}")
            if name in state:
                raise CheckpointError(f"{file}: tensor {key!r} appears twice (also in {origin[name]})")
            tensor = _read(file, key)
            if not tensor.is_floating_point():
                raise CheckpointError(f"{file}: tensor {key!r} has dtype {tensor.dtype}; weights must be floats")
            conv1d = name.endswith(CONV1D_WEIGHTS)
            want = expected[name][::-1] if conv1d else expected[name]  # Conv1D is stored [in, out]
            if tuple(tensor.shape) != tuple(want):
                raise CheckpointError(f"{file}: tensor {key!r} has shape {list(tensor.shape)}, but config.json "
                                      f"implies {list(want)} ({_shape_hint(model.config)})")
            # Our own copy (transposed where needed), detached from the memory map, which closes when `tensor` goes.
            state[name] = (tensor.t() if conv1d else tensor).to(torch.bfloat16 if name.endswith(to_bf16) else None,
                                                                copy=True, memory_format=torch.contiguous_format)
            origin[name] = file
    missing = [n.removeprefix("transformer.") for n in expected if n not in state]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{folder}: tensor {missing[0]!r}{more} missing from "
                              f"{', '.join(f.name for f in weight_files(folder))} ({_shape_hint(model.config)})")
    if lm_head is not None:
        # GPT-2 ties the output layer to the token embedding. A file may store it anyway (older transformers did);
        # accept it only if it really is the same matrix, since our model can't hold a separate one.
        file, key = lm_head
        if not torch.equal(_read(file, key), state["transformer.wte.weight"]):
            raise CheckpointError(f"{file}: tensor {key!r} differs from wte.weight: an untied output layer, "
                                  "which minisft's GPT-2 (lm_head tied to wte) can't represent")
    return state


def _keys(file: Path) -> list[str]:
    try:
        with safe_open(file, framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({_truncation_hint(file) or e})") from None


def _read(file: Path, key: str) -> torch.Tensor:
    # One safe_open per tensor, on purpose: safetensors memory-maps the file and returns a view into the map, and
    # every page read stays counted in our memory while the map lives. Reopening (a header parse, well under a
    # millisecond) keeps one tensor's pages mapped at a time, so peak memory stays near the size of the weights
    # rather than twice that. The caller copies the view; the map closes when the view is dropped.
    try:
        with safe_open(file, framework="pt") as f:
            return f.get_tensor(key)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: tensor {key!r} can't be read ({e})") from None


def _truncation_hint(file: Path) -> str | None:
    """Which tensor runs past the end of a cut-off file (read from the safetensors header: u64 size + JSON)."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > size - 8:
                return None  # not even a whole header: not a safetensors file at all
            header = json.loads(f.read(n))
        size -= 8 + n  # the bytes left for tensor data
        for key, info in header.items():
            if key != "__metadata__" and info["data_offsets"][1] > size:
                end = info["data_offsets"][1]
                return f"truncated: tensor {key!r} needs data bytes up to {end}, the file has {size}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _shape_hint(config: GPTConfig) -> str:
    return (f"config.json says n_layer={config.n_layer}, n_head={config.n_head}, n_embd={config.n_embd}, "
            f"n_positions={config.n_positions}, vocab_size={config.vocab_size}")


# ----------------------------------------------------------------------------------------------------------- saving

def save_model(model: GPT, folder) -> None:
    """Write config.json + model.safetensors so that transformers' GPT2LMHeadModel.from_pretrained loads the folder.

    The HF layout: `transformer.` prefix, Conv1D weights as [in, out], the tied lm_head stored once (as wte),
    contiguous CPU tensors. Each file is written to a temp name and renamed, so a crash never leaves half a file.
    """
    model = unwrap(model)  # no "_orig_mod." (torch.compile) or "module." (DDP) prefix in the saved names
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise ValueError("lm_head is no longer tied to transformer.wte: GPT-2's layout stores one matrix for both")
    # plain_state skips the tied lm_head.weight (the same Parameter as wte), and folds any LoRA layer into the plain
    # weight it wraps (lora.py), so a LoRA run's checkpoint is a plain GPT-2 folder like any other.
    tensors = {name: (t.t() if name.endswith(CONV1D_WEIGHTS) else t).to("cpu").contiguous()
               for name, t in plain_state(model).items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = model.transformer.wte.weight.dtype  # (transformers checks the "format" metadata entry, below)
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config_to_hf(model.config, dtype), indent=2) + "\n")


# -------------------------------------------------------------------------------------------- tokenizer, tiny model

def load_tokenizer(name_or_path: str, revision: str | None = None) -> Tokenizer:
    folder = resolve(name_or_path, revision, weights=False)
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (the checkpoint folder has no tokenizer)")
    return Tokenizer.from_file(path)


def build_tiny(texts, seed: int = 0, vocab_size: int = 4096) -> tuple[GPT, Tokenizer]:
    """The offline model: a byte-level BPE trained on `texts` + a GPT-2 of tiny_config() initialised from scratch.

    4 layers, 4 heads, width 128, 256 positions; with the full 4096-token vocabulary that is 1,350,400 parameters.
    The model's vocabulary is the tokenizer's real size, which is smaller when the texts are few. Save it with
    save_model + tokenizer.save and it loads back exactly like an official model.
    """
    tokenizer = train_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    model = GPT(tiny_config(tokenizer.vocab_size, eos_token_id=tokenizer.eos_id))
    return model, tokenizer


def default_model() -> str:
    """gpt2 when it is cached or the Hub can be reached; else tiny, with one notice saying why and how to get gpt2."""
    try:
        resolve("gpt2")
        return "gpt2"
    except ModelNotAvailable as e:
        print(f"\n*** gpt2 is not available ({e.reason}): training the offline `tiny` model instead. ***\n"
              "*** To use gpt2: connect once (it is cached after), or pass --model PATH to a local copy. ***\n")
        return "tiny"


def config_of(name: str, tiny_vocab: int = 4096) -> GPTConfig:
    """The shape of the model `name`, known before its weights are loaded (or even downloaded): tiny's is fixed
    (its vocabulary at most tiny_vocab), the official ones are published, a folder has its config.json."""
    if name == "tiny":
        return tiny_config(tiny_vocab)
    if name in OFFICIAL_SHAPES:
        return official_config(name)
    return read_config(checkpoint_folder(name) if Path(name).is_dir() else resolve(name, weights=False))


def context_of(name: str) -> int:
    """How many positions the model `name` reads."""
    return config_of(name).n_positions


def check_context(max_len: int | None, name: str) -> None:
    """ValueError when examples of max_len tokens would not fit the model's context."""
    context = context_of(name)
    if max_len is not None and max_len > context:
        raise ValueError(f"--max-len {max_len} is longer than the {context} positions {Path(name).name} can read: "
                         f"use --max-len {context} or less")


def load_or_build_model(name: str, train_texts: list[str], seed: int, tiny_vocab: int, frozen: tuple[str, ...] = ()):
    """(model, tokenizer) for `name`: a checkpoint or Hugging Face folder, an official name (`frozen` linears in
    bf16: load_model), or tiny built from scratch (its tokenizer trained on train_texts)."""
    if name == "tiny":
        return build_tiny(train_texts, seed=seed, vocab_size=tiny_vocab)
    folder = checkpoint_folder(name) if Path(name).is_dir() else name
    return load_model(folder, frozen=frozen), load_tokenizer(folder)

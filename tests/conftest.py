"""Shared fixtures. No test may touch the network: the Hub is switched off before anything imports huggingface_hub.

Checkpoints are made here with random weights by transformers itself (the reference implementation), so the tests
compare minisft against GPT-2 as transformers defines it without downloading anything.
"""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# The fuzz tests (Hypothesis) explore the same 60 inputs on every run, so CI is repeatable; to hunt for new
# failures, run them with HYPOTHESIS_PROFILE=deep (thousands of fresh random inputs).
settings.register_profile("repeatable", max_examples=60, derandomize=True)
settings.register_profile("deep", max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# Tweets that break naive tokenizers: emoji (ZWJ sequences, skin tones, flags), newlines, URLs, @mentions, `&`
# both raw and HTML-escaped, hashtags, runs of spaces, tabs, CJK, right-to-left text, combining accents, and the
# end-of-text marker typed as plain text.
TRICKY_TWEETS = [
    "just shipped v2.0 🚀🚀 thanks @dev_team & @qa_folks!!",
    "hot take: tabs > spaces\n\nfight me 🥊",
    "read this → https://example.com/posts/42?utm_source=x&ref=home#top",
    "Q&amp;A tonight at 7pm &lt;3 #buildinpublic #rustlang",
    "👩🏽‍💻 pair programming with 🧑‍🤝‍🧑 is 10x 👍🏿 🇫🇷🇯🇵",
    "  leading spaces, trailing spaces   ",
    "line one\r\nline two\ttabbed\n",
    "日本語のツイート、テスト中。 مرحبا بالعالم",
    "café naïve résumé (decomposed: cafe\u0301)",
    "the literal text <|endoftext|> is not an end token",
    "1,000,000 impressions?! 💯💯💯 $TSLA 3.14159",
    "",
]


@pytest.fixture(scope="session")
def tricky_tweets():
    return list(TRICKY_TWEETS)


@pytest.fixture(scope="session")
def small_tokenizer():
    """A byte-level BPE trained on the tricky tweets (a few hundred tokens, eos id 0)."""
    from minisft.tokenizer import train_tokenizer

    return train_tokenizer(TRICKY_TWEETS * 4, vocab_size=400)


@pytest.fixture(scope="session")
def small_hf_folder(tmp_path_factory, small_tokenizer):
    """A small random GPT2LMHeadModel saved by transformers (transformers' key layout) + our tokenizer.json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("small_hf")
    config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=small_tokenizer.vocab_size,
                        bos_token_id=small_tokenizer.eos_id, eos_token_id=small_tokenizer.eos_id)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    _randomize_layer_norms(model)
    model.save_pretrained(folder)
    small_tokenizer.save(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_shaped(tmp_path_factory):
    """(transformers model, folder): GPT-2 124M's exact shape, random weights, written in the official bare layout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # GPT2Config() defaults are the 124M model
    _randomize_layer_norms(model)
    folder = tmp_path_factory.mktemp("gpt2_shaped")
    write_official_layout(model, folder)
    return model, folder


def write_official_layout(hf_model, folder):
    """Write `hf_model` the way openai-community/gpt2's model.safetensors is laid out.

    Bare keys (no "transformer." prefix), no lm_head.weight, and each layer's causal-mask buffers
    h.N.attn.bias [1, 1, n_ctx, n_ctx] and h.N.attn.masked_bias (a scalar) present, as in the published file.
    """
    from safetensors.torch import save_file

    n_pos = hf_model.config.n_positions
    tensors = {k.removeprefix("transformer."): v.contiguous() for k, v in hf_model.state_dict().items()
               if k != "lm_head.weight"}
    mask = torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos)
    for i in range(hf_model.config.n_layer):
        tensors[f"h.{i}.attn.bias"] = mask.clone()
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = hf_model.config.to_dict()
    config["n_ctx"] = n_pos  # the published config.json has both n_ctx and n_positions
    (folder / "config.json").write_text(json.dumps(config))


def _randomize_layer_norms(hf_model):
    # transformers initialises LayerNorm to weight 1, bias 0 and Linear biases to 0; random values make sure a
    # swapped or ignored LayerNorm/bias tensor would change the logits and fail the parity tests.
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if "ln_" in name or name.endswith(".bias"):
                p.normal_(mean=1.0 if name.endswith("weight") else 0.0, std=0.1)

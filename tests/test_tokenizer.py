"""The byte-level BPE tokenizer: exact round trips, the end-of-text token, files that transformers also reads."""

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from minisft.tokenizer import END_OF_TEXT, Tokenizer, train_tokenizer


def gpt2_like(texts, vocab_size=600):
    """A tokenizer.json laid out like openai-community/gpt2's: byte-level BPE, and <|endoftext|> added after
    training, so that it takes the LAST id (50256 in the real one) instead of id 0."""
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    backend.add_special_tokens([END_OF_TEXT])
    return backend


def test_round_trip_is_exact_on_tricky_tweets(small_tokenizer, tricky_tweets):
    for text in tricky_tweets:
        ids = small_tokenizer.encode(text)
        assert small_tokenizer.decode(ids) == text
        assert all(0 <= i < small_tokenizer.vocab_size for i in ids)
    unseen = "never seen: 🦀 Ελληνικά ∑ \x00 \u200b zero-width"  # bytes the training text never had
    assert small_tokenizer.decode(small_tokenizer.encode(unseen)) == unseen


def test_training_learns_merges():
    tokenizer = train_tokenizer(["shipping today 🚀"] * 20 + ["other words"] * 5, vocab_size=300)
    assert len(tokenizer.encode("shipping today 🚀")) <= 3  # frequent words (and the emoji's 4 bytes) merged
    assert len(tokenizer.encode("zyxw")) == 4  # unseen text falls back to single bytes


def test_end_of_text(small_tokenizer, tmp_path):
    assert small_tokenizer.eos_id == 0  # the only special token of a trained tokenizer comes first
    assert small_tokenizer.decode([small_tokenizer.eos_id]) == END_OF_TEXT
    # Typed as text inside a tweet, it stays text: only code appending eos_id ends a sequence.
    assert small_tokenizer.eos_id not in small_tokenizer.encode(f"a {END_OF_TEXT} b")
    backend = gpt2_like(["hello world"] * 3)
    backend.save(str(tmp_path / "tokenizer.json"))
    gpt2 = Tokenizer.from_folder(tmp_path)
    assert gpt2.eos_id == gpt2.vocab_size - 1  # found by name, wherever it sits
    assert gpt2.decode(gpt2.encode("hello 🌍 &amp; @x\n")) == "hello 🌍 &amp; @x\n"


def test_save_and_load(small_tokenizer, tricky_tweets, tmp_path):
    small_tokenizer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    loaded = Tokenizer.from_folder(tmp_path)
    assert (loaded.vocab_size, loaded.eos_id) == (small_tokenizer.vocab_size, small_tokenizer.eos_id)
    for text in tricky_tweets:
        assert loaded.encode(text) == small_tokenizer.encode(text)
    assert loaded.eos_id not in loaded.encode(END_OF_TEXT)  # the runtime switch is set again on load
    pretty = json.loads((tmp_path / "tokenizer.json").read_text())
    assert pretty["pre_tokenizer"]["add_prefix_space"] is False and pretty["decoder"]["type"] == "ByteLevel"


def test_training_is_deterministic(tricky_tweets):
    a = train_tokenizer(tricky_tweets * 3, vocab_size=350)
    b = train_tokenizer(tricky_tweets * 3, vocab_size=350)
    assert a.backend.to_str() == b.backend.to_str()


def test_transformers_reads_our_tokenizer(small_tokenizer, tricky_tweets, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    small_tokenizer.save(tmp_path)
    by_file = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert auto.eos_token == END_OF_TEXT and auto.eos_token_id == small_tokenizer.eos_id
    for text in tricky_tweets:
        if END_OF_TEXT in text:
            continue  # transformers splits special tokens out of text; we deliberately don't (see above)
        ids = small_tokenizer.encode(text)
        assert by_file(text, add_special_tokens=False)["input_ids"] == ids
        assert auto(text, add_special_tokens=False)["input_ids"] == ids
        assert auto.decode(ids) == text


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such tokenizer file"):
        Tokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: not a valid tokenizer.json"):
        Tokenizer.from_folder(tmp_path)
    no_eos = HFTokenizer(models.BPE())
    no_eos.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="has no <|endoftext|> token"):
        Tokenizer.from_folder(tmp_path)
    with pytest.raises(ValueError, match="at least 256 byte tokens"):
        train_tokenizer(["x"], vocab_size=100)

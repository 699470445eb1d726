"""Text <-> token ids, with GPT-2's byte-level BPE (through the `tokenizers` library).

Byte-level BPE works on the UTF-8 bytes of the text, so every string (emoji, URLs, newlines, `&`) has an exact
encoding and `decode(encode(text)) == text`: nothing is ever mapped to an "unknown" token. That matters for SFT:
the loss is computed on these ids, and a tokenizer that silently changed the text would train the model on a
different tweet from the one in the data.

The one special token is GPT-2's end of text, `<|endoftext|>` (id 50256 in the official vocabulary). The training
code appends it after each response by id, so the model learns where a tweet stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from minisft.files import atomic_write_text

END_OF_TEXT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """A thin wrapper: the `tokenizers` object does the work, this class fixes the conventions minisft relies on."""

    def __init__(self, backend: HFTokenizer, source: str = "<memory>"):
        eos_id = backend.token_to_id(END_OF_TEXT)
        if eos_id is None:
            raise ValueError(f"{source}: the tokenizer has no {END_OF_TEXT} token, which minisft uses as end of text")
        # Text from the data is text: a tweet that literally contains "<|endoftext|>" must not turn into the real
        # end token (that would teach the model to stop mid-tweet, or let a prompt inject one). Only code that
        # appends `eos_id` produces it. This switch is runtime-only; it is not written into tokenizer.json.
        backend.encode_special_tokens = True
        self.backend = backend
        self.eos_id: int = eos_id
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        self.source = source

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, exactly; no special token is added (callers append `eos_id` where they mean it)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`. An end token in `ids` shows up as "<|endoftext|>": nothing is dropped silently."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    @classmethod
    def from_file(cls, path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a bare Exception with the parse error
            raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from None
        return cls(backend, source=str(path))

    @classmethod
    def from_folder(cls, folder) -> "Tokenizer":
        return cls.from_file(Path(folder) / TOKENIZER_FILE)

    def save(self, folder) -> None:
        """Write folder/tokenizer.json (plus a tokenizer_config.json so transformers knows the end token)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / TOKENIZER_FILE, self.backend.to_str(pretty=True))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT,
                  "unk_token": END_OF_TEXT, "add_prefix_space": False, "clean_up_tokenization_spaces": False}
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id}, source={self.source!r})"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE on `texts`, set up like GPT-2's: `<|endoftext|>` (id 0 here) plus learned merges.

    The result may be smaller than `vocab_size` when the texts run out of pairs worth merging.
    """
    if vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size}: byte-level BPE needs at least 256 byte tokens + end of text")
    backend = HFTokenizer(models.BPE())  # no unk token: the 256 byte symbols cover every input
    # GPT-2's choices: split on its regex (words, numbers, punctuation, spaces) without adding a leading space,
    # map bytes to printable symbols, and undo that mapping when decoding.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even ones the texts lack
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return Tokenizer(backend, source=f"trained (vocab_size={vocab_size})")

"""GPT-2 as one readable PyTorch module.

The module and parameter names are GPT-2's own (`wte`, `wpe`, `h.N.ln_1`, `attn.c_attn`, ...) so that the official
checkpoints map onto it one to one: `minisft/pretrained.py` only has to transpose the Conv1D weights, nothing else.

Shapes used in the comments: B = batch, T = new positions in this call, S = all key positions visible to them
(T without a cache; cache length + T with one), C = n_embd, H = n_head, D = C // H (head size), V = vocab size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_positions: int = 1024  # the context length: how many positions `wpe` has
    vocab_size: int = 50257
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # one rate for embeddings, attention probabilities and residual branches
    bos_token_id: int = 50256
    eos_token_id: int = 50256

    def to_dict(self) -> dict:
        return asdict(self)


# The four published GPT-2 sizes: (n_layer, n_head, n_embd). All have a 1024 context and 50257 tokens.
OFFICIAL_SHAPES = {
    "gpt2": (12, 12, 768),  # 124M parameters
    "gpt2-medium": (24, 16, 1024),  # 355M
    "gpt2-large": (36, 20, 1280),  # 774M
    "gpt2-xl": (48, 25, 1600),  # 1558M
}


def official_config(name: str) -> GPTConfig:
    n_layer, n_head, n_embd = OFFICIAL_SHAPES[name]
    return GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd)


TINY_CONTEXT = 256  # positions of the tiny model: a tweet plus its prompt fits in well under 200 tokens


def tiny_config(vocab_size: int, eos_token_id: int = 0) -> GPTConfig:
    """The offline `tiny` model: GPT-2's architecture at a size that trains on two CPU cores in minutes.

    4 layers, 4 heads, width 128, 256 positions (a tweet plus its prompt fits in well under 200 tokens); with a
    4096-token vocabulary that is about 1.3M parameters, over a third of them in the (tied) embedding.
    """
    return GPTConfig(n_layer=4, n_head=4, n_embd=128, n_positions=TINY_CONTEXT, vocab_size=vocab_size,
                     bos_token_id=eos_token_id, eos_token_id=eos_token_id)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under the DistributedDataParallel and torch.compile wrappers: their parameter names carry
    "module." and "_orig_mod." prefixes, which a saved checkpoint must not."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


class KVCache:
    """Keys and values of every position seen so far, for incremental decoding.

    Preallocated once for the longest sequence, so each decoding step writes into place instead of concatenating
    (which would copy the whole cache every step). Layout per layer: [B, H, max_len, D].
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # how many positions are filled; the next call writes at [pos, pos + T)
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's k, v [B, H, T, D] for `layer`; return all keys and values so far [B, H, S, D]."""
        T = k.size(2)
        end = self.pos + T
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} positions needed, {self.max_len} allocated")
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, T: int) -> None:
        self.pos += T  # called once per forward, after every layer has written its T new positions


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k and v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, attn_mask=None, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # [B, T, C] -> [B, H, T, D]: each head attends on its own D-wide slice.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)  # now [B, H, S, D]: the past plus these T positions
        S = k.size(2)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        elif T == S:
            # No past: the plain causal mask (position t sees positions <= t), which SDPA builds itself.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        elif T == 1:
            # One new token after a cached past: it may see every key, so no mask at all.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S, x.device), dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads back side by side
        return self.resid_dropout(self.c_proj(y))


def causal_mask(T: int, S: int, device=None) -> torch.Tensor:
    """[T, S] bool, True where query t (the last T of S positions) may look at key s: s <= t + (S - T)."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        # GPT-2 was trained with the tanh approximation of GELU ("gelu_new"); the exact erf form shifts logits.
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        # Pre-norm residual block: each sub-layer adds to the stream x, never replaces it.
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
            wpe=nn.Embedding(config.n_positions, config.n_embd),  # learned position embeddings
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.activation_checkpointing = False  # --activation-checkpointing: recompute each block in backward
        # Weight tying: the output projection IS the token embedding (one tensor, two uses), as in GPT-2.
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2's scaled init: each residual branch adds variance, so shrink by 1/sqrt(2 * n_layer).
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_dropout(self, p: float) -> None:
        """Change every dropout rate at once (fine-tuning often uses another rate than pre-training)."""
        self.config.dropout = p
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
            elif isinstance(m, CausalSelfAttention):
                m.dropout = p

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied lm_head is counted once

    def hidden_states(self, idx, position_ids=None, attn_mask=None, cache: KVCache | None = None,
                      token_embeddings=None):
        """Token ids [B, T] -> final hidden states [B, T, C] (after ln_f, before the output projection).

        position_ids: [B, T] or None (then 0..T-1, shifted by what the cache already holds).
        attn_mask: bool, broadcastable to [B, H, T, S], True where a query may attend to a key; None = causal.
            Batched decoding with left padding and packed sequences pass their own mask here.
        cache: a KVCache to read the past from and append this call's keys and values to.
        token_embeddings: wte(idx) [B, T, C], when the caller looked the tokens up itself (fast_head.py does, to
            sum the tied matrix's two gradients in place).
        """
        B, T = idx.shape
        past = cache.pos if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=idx.device).unsqueeze(0)
        # (Not while torch.compile traces: reading a tensor's value there would split the compiled graph in two.)
        if not torch.compiler.is_compiling() and int(position_ids.max()) >= self.config.n_positions:
            raise ValueError(f"position {int(position_ids.max())} is past the context of "
                             f"{self.config.n_positions} positions")
        tok = self.transformer.wte(idx) if token_embeddings is None else token_embeddings
        x = self.transformer.drop(tok + self.transformer.wpe(position_ids))
        for i, block in enumerate(self.transformer.h):
            if self.activation_checkpointing and self.training and torch.is_grad_enabled() and cache is None:
                # Keep only the block's input; everything inside it is computed again during backward (same
                # dropout masks: the random state is restored). Memory: L block inputs + one block's insides,
                # instead of every block's insides; time: one more forward pass.
                x = checkpoint(block, x, attn_mask, None, i, use_reentrant=False)
            else:
                x = block(x, attn_mask, cache, i)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)

    def forward(self, idx, position_ids=None, attn_mask=None, cache: KVCache | None = None):
        """Token ids [B, T] -> next-token logits [B, T, V]: logits[:, t] scores the token that follows idx[:, t]."""
        return self.lm_head(self.hidden_states(idx, position_ids, attn_mask, cache))

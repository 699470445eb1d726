"""Packing: several short examples in one row, each still seeing only itself.

Tweets are short (40-110 tokens), so a batch padded to its longest row spends compute on padding. Length grouping
(data.batches) removes most of it; packing removes all of it and gives every row the same length T, which GPUs
(and torch.compile) like. Three things make a packed row compute exactly what the separate examples would:

  1. positions restart at 0 at each example, so `wpe` adds the same position embeddings as unpacked;
  2. attention is block-diagonal AND causal: a token sees the earlier tokens of its own example, never the
     example before it in the row (that one is another tweet, for another instruction);
  3. the engagement weight is per token: one row holds several examples with different weights.

A row of three examples a, b, c (lengths 3, 2, 2) and one pad:

    input_ids     a0 a1 a2 b0 b1 c0 c1 pad
    position_ids   0  1  2  0  1  0  1  0
    doc_ids        0  0  0  1  1  2  2  3     (padding is its own document: it must attend to something, see below)

    mask[q, k] = doc[q] == doc[k] and k <= q      -> [B, 1, T, T], broadcast over heads

Targets carry over as they are (each example's own shift by one and prompt mask, data.encode_example), so the last
token of a is never asked to predict b0.
"""

from __future__ import annotations

import random

import torch

from minisft.fast_head import head_loss_sums
from minisft.loss import IGNORE, LossSums


def pack(examples, max_len: int) -> list[list[int]]:
    """Group examples into rows of at most max_len tokens: first-fit decreasing. Returns rows of indices.

    Longest first, each example goes into the first row with room for it; for tweet-length examples in rows of
    256 this leaves a few percent of padding. Every index appears exactly once.
    """
    lengths = [len(e.input_ids) for e in examples]
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        if n > max_len:
            raise ValueError(f"example {i} has {n} tokens, longer than a packed row of {max_len}")
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_len - n)
    return rows


def packed_batches(examples, max_len: int, rows_per_batch: int, seed: int, epoch: int) -> list[list[list[int]]]:
    """One epoch of packed batches: a list of batches, each a list of rows, each a list of example indices.

    The examples are packed once per epoch (packing is deterministic), then the rows are shuffled by (seed, epoch)
    and cut into batches, like data.batches: a resumed run can replay the same order.
    """
    rows = pack(examples, max_len)
    random.Random(f"packed:{seed}:{epoch}").shuffle(rows)
    return [rows[s:s + rows_per_batch] for s in range(0, len(rows), rows_per_batch)]


def collate_packed(examples, rows: list[list[int]], pad_id: int, length: int | None = None) -> dict:
    """Tensors of one packed batch. rows: lists of indices into examples (from pack).

    input_ids, targets, position_ids, doc_ids: [B, T] (T = the fullest row, or `length` for a fixed shape);
    weights: [B, T], the weight of the example each position belongs to (0 on padding); attn_mask [B, 1, T, T].
    """
    T = length or max(sum(len(examples[i].input_ids) for i in row) for row in rows)
    B = len(rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    doc_ids = torch.zeros((B, T), dtype=torch.long)
    weights = torch.zeros((B, T), dtype=torch.float32)
    for b, row in enumerate(rows):
        t = 0
        for d, i in enumerate(row):
            e = examples[i]
            n = len(e.input_ids)
            if t + n > T:
                raise ValueError(f"row {b} holds {sum(len(examples[j].input_ids) for j in row)} tokens, more than {T}")
            input_ids[b, t:t + n] = torch.tensor(e.input_ids)
            targets[b, t:t + n] = torch.tensor(e.targets)
            position_ids[b, t:t + n] = torch.arange(n)
            doc_ids[b, t:t + n] = d
            weights[b, t:t + n] = e.weight
            t += n
        # Padding: one more "document" (position 0 throughout, so never past the context). A pad position that
        # attended to nothing would give softmax over an empty set = NaN, and NaN * 0 is still NaN in backward.
        doc_ids[b, t:] = len(row)
    return {"input_ids": input_ids, "targets": targets, "position_ids": position_ids, "doc_ids": doc_ids,
            "weights": weights, "attn_mask": block_causal_mask(doc_ids),
            "n_targets": int((targets != IGNORE).sum())}


def block_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """doc_ids [B, T] -> bool [B, 1, T, T], True where query q may attend to key k: same document and k <= q."""
    T = doc_ids.size(1)
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]  # [B, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return (same_doc & causal).unsqueeze(1)


def packed_loss_sums(hidden, lm_head_weight, targets, token_weights) -> LossSums:
    """fast_head.head_loss_sums with one weight per POSITION (packed rows hold examples of different weights).

    head_loss_sums takes one weight per row ([B]); viewing [B, T] as B*T rows of length 1 gives every position its
    own row, hence its own weight, and leaves every sum unchanged: same function, no second copy of the loss.
    """
    B, T, C = hidden.shape
    return head_loss_sums(hidden.reshape(B * T, 1, C), lm_head_weight, targets.reshape(B * T, 1),
                          token_weights.reshape(B * T))

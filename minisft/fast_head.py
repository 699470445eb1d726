"""The speed machinery of the loss, in one room: the same numbers as loss.loss_sums, in less time and memory.

loss.py computes the SFT loss the textbook way: logits [B, T, V] for every position, then cross-entropy with the
mask. At GPT-2 size that [B, T, 50257] float32 tensor is the largest of the training step, and most of it (prompt
and padding positions) is thrown away by the mask. Three levers, each measured in bench/README.md:

  1. targets only       gather_targets: the output projection runs only at the N target positions
  2. a chunked head     ChunkedHeadLoss: logits for `chunk` targets at a time, turned into their own gradient in
                        place during the forward pass, so no [N, V] tensor is kept for backward
  3. the tied gradient  TiedEmbedding: GPT-2's token embedding and output projection are one matrix; its two
                        gradients are summed in place instead of through two more [V, C] tensors

`hidden_and_head(model, idx)` + `head_loss_sums(...)` is the fast path that training's SFTObjective uses by default;
`--no-fast-head` switches it to the textbook path, and tests/test_loss.py pins that both give the same loss and
gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minisft.loss import IGNORE, LossSums

# ------------------------------------------------------------------------------------- the tied embedding's gradient

class TiedEmbedding(torch.autograd.Function):
    """(token ids [B, T], the tied matrix W [V, C]) -> (their embeddings [B, T, C], W again for the output head).

    GPT-2 uses one matrix twice: to look tokens up at the bottom and to score the next token at the top. Autograd
    would give W two gradients and add them: the head's, dense [V, C], and the lookup's, which it builds as a dense
    [V, C] tensor of zeros with the batch's few hundred rows filled in, then a third [V, C] tensor for the sum (at
    GPT-2 size each is 154 MB of float32, made fresh every step). Handing the head its W through this function
    makes both gradients arrive here together, so the lookup's rows are added into the head's gradient in place.
    """

    @staticmethod
    def forward(ctx, idx, W):
        ctx.save_for_backward(idx)
        ctx.W_shape = W.shape
        return F.embedding(idx, W), W.view_as(W)

    @staticmethod
    def backward(ctx, grad_emb, grad_head):
        (idx,) = ctx.saved_tensors
        if grad_head is None:  # the head did not use W (e.g. a loss on hidden states only)
            grad_head = torch.zeros(ctx.W_shape, dtype=grad_emb.dtype, device=grad_emb.device)
        elif not grad_head.is_contiguous():  # e.g. head.sum() hands back one value broadcast to [V, C]: copy it
            grad_head = grad_head.contiguous()
        # grad_head is the head's fresh gradient (a matmul's output in this package), ours to add into: row idx
        # gets every gradient of the positions that looked it up ([B*T, C] rows; a repeated token adds up).
        grad_head.index_add_(0, idx.flatten(), grad_emb.flatten(0, 1).to(grad_head.dtype))
        return None, grad_head


def hidden_and_head(model, idx: torch.Tensor, position_ids=None, attn_mask=None):
    """(final hidden states [B, T, C], the output head's weight [V, C]) for the loss.

    When training the tied matrix, the lookup and the head both take it from TiedEmbedding, so its two gradients
    meet there and are added in place. Otherwise (no gradient, or an untied head) the plain lookup.
    """
    W = model.transformer.wte.weight
    if torch.is_grad_enabled() and W.requires_grad and W is model.lm_head.weight:
        tok, head = TiedEmbedding.apply(idx, W)
        return model.hidden_states(idx, position_ids, attn_mask, token_embeddings=tok), head
    return model.hidden_states(idx, position_ids, attn_mask), model.lm_head.weight


# ----------------------------------------------------------------------------------------- targets only, in chunks

def gather_targets(hidden: torch.Tensor, targets: torch.Tensor):
    """hidden [B, T, C], targets [B, T] -> (hidden at target positions [N, C], their targets [N], positions [N]).

    Only these N positions go on to the 50257-wide output projection: prompt and padding positions have nothing
    to learn, and for a tweet with a prompt as long as its response that halves the largest matmul of the model.
    """
    keep = (targets != IGNORE).flatten().nonzero().squeeze(1)  # [N] positions into the flattened B*T
    return hidden.flatten(0, 1).index_select(0, keep), targets.flatten().index_select(0, keep), keep


CHUNK = 512  # target tokens per slice of the head: [512, 50257] float32 logits = 103 MB, whatever the batch


def head_loss_sums(hidden, lm_head_weight, targets, weights, chunk: int | None = CHUNK) -> LossSums:
    """loss.loss_sums from the hidden states, without ever making the [B, T, V] logits.

    hidden [B, T, C] (the model's final hidden states), targets [B, T], weights [B] (one per example).
    A micro-batch with no target at all gives zeros (never 0/0 = NaN) and still a graph, so backward() works.

    chunk: the logits are made `chunk` target tokens at a time (see ChunkedHeadLoss), so the [N, 50257] logits
    tensor never exists; None = all N rows at once through autograd (lever 1 alone, for the benchmark).
    """
    T = targets.size(1)
    h, tgt, keep = gather_targets(hidden, targets)
    w = weights.float().index_select(0, keep // T)  # each target token takes its example's weight: [N]
    if chunk is None:  # the plain form: all N rows of logits at once, kept by autograd until backward
        logits = F.linear(h, lm_head_weight).float()  # [N, V]; float32: a softmax over 50k classes needs it
        nll = F.cross_entropy(logits, tgt, reduction="none")  # [N], -log p(next token)
        weighted = (w * nll).sum()
    elif torch.is_grad_enabled() and (h.requires_grad or lm_head_weight.requires_grad):
        weighted, nll = chunked_head_loss(h, lm_head_weight, tgt, w, chunk)
    else:  # evaluation: no gradient to prepare, only the CE of each chunk
        nll = chunked_nll(h, lm_head_weight, tgt, chunk)
        weighted = (w * nll).sum()
    return LossSums(weighted=weighted, weight=w.sum().detach(), nll=nll.sum().detach(), tokens=int(tgt.numel()))


def _compute(h: torch.Tensor, W: torch.Tensor):
    """(h, W) in the dtype the matmuls run in: autocast's (bf16/fp16) inside torch.autocast, else their own."""
    dev = h.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        return h.to(dt), W.to(dt)
    return h, W.to(h.dtype)


SOFTMAX_ROWS = 64  # rows of a 16-bit chunk taken to float32 at a time: [64, 50257] float32 = 13 MB


class HeadBuffers:
    """The buffers every chunk of one call reuses: the matmul's output [chunk, V], and a float32 block.

    Why not fresh tensors per chunk: a 100 MB tensor is too big for the allocator's free lists, so on a CPU each
    new one is new pages from the kernel, faulted in and zeroed 4 KiB at a time, which costs more than the
    arithmetic done on them (python bench/step_parts.py: ~20 ms to copy [400, 50257] float32 logits into new
    memory, 3-4 ms to scale them in place). So the logits are made into `out` and everything after happens in place.

    Under autocast `out` is bf16/fp16 (the matmul's dtype) and the softmax runs in float32 SOFTMAX_ROWS rows at a
    time (`f32`): a [chunk, V] float32 copy would be the largest tensor of the step (103 MB at 512 rows).
    """

    def __init__(self, rows: int, V: int, dtype: torch.dtype, device):
        self.out = torch.empty(rows, V, dtype=dtype, device=device)
        self.f32 = None if dtype == torch.float32 else torch.empty(min(rows, SOFTMAX_ROWS), V, device=device)

    def logits_of(self, h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """h [n, C] @ W [V, C]^T into the buffer: [n, V] (a view of its first n rows), in the matmul's dtype."""
        return torch.mm(h, W.T, out=self.out[:h.size(0)])

    def float32_blocks(self, x: torch.Tensor):
        """Yield (row slice, float32 copy of those rows of x [n, V]); what the caller leaves in the copy is written
        back. A float32 x is its own block: nothing to copy."""
        if self.f32 is None:
            yield slice(0, x.size(0)), x
            return
        for i in range(0, x.size(0), self.f32.size(0)):
            rows = slice(i, min(i + self.f32.size(0), x.size(0)))
            block = self.f32[:rows.stop - i].copy_(x[rows])
            yield rows, block
            x[rows].copy_(block)


def softmax_nll_(logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """CE of each row's target [n], turning logits [n, V] (float32) into their softmax IN PLACE.

    The usual stable form: subtract the row's max (so exp never overflows), exp, sum. Then
    -log softmax[target] = log(sum) - (logit[target] - max), without ever taking the log of a tiny probability.
    """
    logits.sub_(logits.amax(dim=1, keepdim=True))
    picked = logits.gather(1, tgt[:, None]).squeeze(1)  # logit[target] - max
    total = logits.exp_().sum(dim=1)
    logits.div_(total[:, None])
    return total.log() - picked


def chunked_nll(h: torch.Tensor, W: torch.Tensor, tgt: torch.Tensor, chunk: int) -> torch.Tensor:
    """CE of every target [N], chunk by chunk, forward only (evaluation)."""
    h, W = _compute(h, W)
    nll = torch.empty(len(tgt), dtype=torch.float32, device=h.device)
    buffers = HeadBuffers(min(chunk, len(tgt)), W.size(0), W.dtype, h.device)
    for i in range(0, len(tgt), chunk):
        logits = buffers.logits_of(h[i:i + chunk], W)
        for rows, block in buffers.float32_blocks(logits):
            nll[i + rows.start:i + rows.stop] = softmax_nll_(block, tgt[i + rows.start:i + rows.stop])
    return nll


class ChunkedHeadLoss(torch.autograd.Function):
    """sum_i w_i * CE(h_i W^T, y_i) with its gradient computed during the forward pass, one chunk at a time.

    The head is the largest matmul of GPT-2 (V = 50257 columns) and its logits the largest activation: autograd
    would keep [N, V] float32 logits (and their log-softmax) alive until backward. But the loss is a plain sum,
    so its gradient needs nothing from later layers: d(w CE)/d logits = w * (softmax - onehot(y)). Each chunk makes
    its logits, turns them into that gradient in place, multiplies it into the gradients of h ([n, C]) and
    W ([V, C]), and reuses the buffer for the next chunk. Backward then only scales the two stored gradients by
    the incoming one (the loop's 1/denominator). The same three matmuls as autograd's (logits, d h, d W): no extra
    compute, and the logits' memory is one chunk's, not N rows'.
    """

    @staticmethod
    def forward(ctx, h, W, tgt, w, chunk):
        hc_all, Wc = _compute(h, W)
        with torch.autocast(h.device.type, enabled=False):  # dtypes are explicit here
            N = len(tgt)
            nll = torch.empty(N, dtype=torch.float32, device=h.device)
            grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
            grad_W = None  # [V, C], made by the first chunk
            buffers = HeadBuffers(min(chunk, N), W.size(0), Wc.dtype, h.device)
            for i in range(0, N, chunk):
                hc = hc_all[i:i + chunk]
                d = buffers.logits_of(hc, Wc)  # [n, V] logits, in the matmuls' dtype...
                for rows, probs in buffers.float32_blocks(d):  # ...taken to float32 a block of rows at a time
                    y, wr = tgt[i + rows.start:i + rows.stop], w[i + rows.start:i + rows.stop]
                    nll[i + rows.start:i + rows.stop] = softmax_nll_(probs, y)  # now their softmax
                    probs.mul_(wr[:, None])  # d (w * CE) / d logits = w * (softmax - onehot(target))
                    probs[torch.arange(len(y), device=h.device), y] -= wr
                # d: [n, V], the gradient of the chunk's logits, back in the matmuls' dtype
                if grad_h is not None:
                    grad_h[i:i + chunk] = d @ Wc  # [n, C]
                if not ctx.needs_input_grad[1]:
                    continue
                if grad_W is None:
                    grad_W = d.T @ hc  # [V, C] in the matmuls' dtype, as autograd's would be (half the bytes in bf16)
                else:
                    # Added in place: no [V, C] temporary. In bf16 the matmul sums in float32 and rounds the total
                    # once per chunk (tests/test_loss.py pins the result against float32 gradients).
                    grad_W.addmm_(d.T, hc)
        if ctx.needs_input_grad[1] and grad_W is None:  # no target in this micro-batch
            grad_W = torch.zeros(W.shape, dtype=torch.float32, device=W.device)
        ctx.grads, ctx.W_dtype = (grad_h, grad_W), W.dtype
        ctx.mark_non_differentiable(nll)
        return (w * nll).sum(), nll

    @staticmethod
    def backward(ctx, grad_weighted, _grad_nll):
        if ctx.grads is None:
            raise RuntimeError("ChunkedHeadLoss: one backward per forward (its gradients are made in the forward "
                               "pass and used up here); for a second one, use loss_sums(..., chunk=None)")
        grad_h, grad_W = ctx.grads
        ctx.grads = None  # free them with the graph
        g = grad_weighted.float()
        if grad_h is not None:
            grad_h = grad_h.mul_(g.to(grad_h.dtype))
        if grad_W is not None:  # in place once in W's dtype: no second [V, C] tensor (150 MB at GPT-2 size)
            grad_W = grad_W.to(ctx.W_dtype).mul_(g)
        return grad_h, grad_W, None, None, None


@torch.compiler.disable  # torch.compile runs the model around it; this Python loop over chunks stays eager
def chunked_head_loss(h, W, tgt, w, chunk: int):
    """(sum of w * CE [], CE of each target [N]) through ChunkedHeadLoss."""
    return ChunkedHeadLoss.apply(h, W, tgt, w, chunk)

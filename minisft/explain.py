"""Show me: one training example exactly as the loop sees it, token by token.

    python -m minisft.explain 0                          # record 0 of data/tweets.jsonl, tiny model's tokenizer
    python -m minisft.explain --id syn-000001 --template alpaca --weights none
    python -m minisft.explain 0 --model runs/my-run      # a trained run: + each token's loss

Nothing here re-implements training. The example comes out of `training.prepare_run`, the very call train.py
makes (records -> split -> weights fitted on the training split -> template -> tokens -> shift and mask), and the
loss out of the loop's `objective.SFTObjective` on the batch `data.collate` builds. So what this prints is what
training computes.

Each row is one position t of the model's input: the token it reads, the token it must predict there (the next
one: the shift by one), whether that prediction is a target or ignored (the mask), the weight the loss gives it,
and, for a trained run, the cross-entropy -ln p(next token) in nats. Ignored positions show their CE in brackets:
the model still makes a prediction there, the loss just never looks at it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from minisft import data as D
from minisft.conditioning import MEASURES, with_bucket
from minisft.config import TrainConfig, weight_scheme
from minisft.loss import IGNORE
from minisft.objective import SFTObjective
from minisft.runs import checkpoint_folder
from minisft.templates import render_prompt, response_text
from minisft.training import prepare_run
from minisft.weighting import SCHEMES, SIGNALS, EngagementSignal, engagement

# ------------------------------------------------------------------------------------------- showing a token

def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE writes each byte as a printable character ('Ġ' is the space byte, 'Ċ' the newline):
    printable ASCII and Latin-1 bytes stand for themselves, the other 68 bytes are shifted to 256 + n."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    chars = printable + [256 + n for n in range(len(shifted))]
    return {chr(c): b for b, c in zip(printable + shifted, chars)}


BYTES = _byte_decoder()


def token_text(tok, token_id: int) -> str:
    """A token as Python would write it: 'Ġhello' -> "' hello'", 'Ċ' -> "'\\n'"; half of an emoji -> b'\\xf0\\x9f'."""
    piece = tok.backend.id_to_token(token_id)
    if token_id == tok.eos_id or piece is None or any(c not in BYTES for c in piece):
        return piece or f"<{token_id}>"
    raw = bytes(BYTES[c] for c in piece)
    try:
        return repr(raw.decode("utf-8"))
    except UnicodeDecodeError:  # byte-level BPE may split a character's bytes over two tokens
        return repr(raw)


# ------------------------------------------------------------------------------- the example and its losses

def load_example(cfg: TrainConfig, index: int | None = None, record_id: str | None = None, ckpt: Path | None = None):
    """(record, example or None, split, model, tokenizer, dataset): the example built by training's own
    prepare_run.

    ckpt None: the tiny model's tokenizer is trained on the training split, as `train.py --model tiny` does.
    ckpt a checkpoint folder: its model and tokenizer (weights and template come from cfg = its run_config.json).
    """
    model, tok, data = prepare_run(cfg, None, str(ckpt) if ckpt is not None else "tiny", check=False)
    records = data.split.records  # every kept record, in file order: what `index` counts
    if record_id is not None:
        found = [r for r in records if r["id"] == record_id]
        if not found:
            raise ValueError(f"{cfg.data}: no record with id {record_id!r}")
        record = found[0]
    else:
        if not 0 <= index < len(records):
            raise ValueError(f"{cfg.data}: record index {index} is out of range: it has {len(records)} records")
        record = records[index]
    for split, examples in (("train", data.train), ("validation", data.val)):
        for ex in examples:
            if ex.id == record["id"]:
                return record, ex, split, model, tok, data
    return record, None, "none (dropped: too long for max_len, or left out by --mix)", model, tok, data


def engagement_line(record: dict, train: list[dict]) -> str:
    """The record's engagement as the weights and the condition read it: raw, and relative to its author."""
    raw, relative = engagement(record), EngagementSignal.fit(train, "linear", "relative")
    if raw is None:
        return "engagement: none recorded (the record weighs like a typical one)"
    return (f"engagement: raw {raw} likes + comments | relative {(1 + raw) / relative.usual(record):.2f}x the usual "
            f"of its author ({record.get('author') or 'unknown'}: {relative.usual(record):.0f}) | "
            f"as --engagement relative counts it: {relative(record) - 1:.0f}")


@torch.no_grad()
def token_losses(model, tok, example: D.Example) -> tuple[list[float], dict]:
    """CE of every position's next token (targets and ignored alike), and the loop's loss sums for this example.

    The per-token CEs come from the full logits, the textbook way; the sums from the training loop's own objective
    (objective.SFTObjective, fast path and all) on the batch data.collate builds. Both must agree on the targets.
    """
    model.eval()
    batch = D.collate([example], tok.eos_id)  # [1, T]: the batch the loop would build
    logits = model(batch["input_ids"])[0].float()  # [T, V]: logits[t] scores the token after input_ids[t]
    following = torch.tensor(example.input_ids[1:] + example.targets[-1:])  # [T]: the real next tokens
    ce = F.cross_entropy(logits, following, reduction="none")
    s = SFTObjective(model)(batch["input_ids"], batch["targets"], batch["weights"])
    sums = {"weighted": float(s.weighted), "weight": float(s.weight), "nll": float(s.nll), "tokens": s.tokens}
    return ce.tolist(), sums


def explain_rows(tok, example: D.Example, losses: list[float] | None = None,
                 n_response: int | None = None) -> list[dict]:
    """One dict per input position: pos, token, id, next_token, next_id, target, weight (0 if ignored), loss, and
    part: "prompt" while the next token is still the prompt's, else "response". n_response = the response's
    tokens + 1 (the end-of-text); by default the number of targets, which is right whenever the prompt is masked."""
    following = example.input_ids[1:] + example.targets[-1:]
    n_response = n_response or sum(t != IGNORE for t in example.targets)
    rows = []
    for t, (tid, nid, tgt) in enumerate(zip(example.input_ids, following, example.targets)):
        is_target = tgt != IGNORE
        rows.append({"pos": t, "token": token_text(tok, tid), "id": tid, "next_token": token_text(tok, nid),
                     "next_id": nid, "target": is_target, "weight": example.weight if is_target else 0.0,
                     "loss": None if losses is None else losses[t],
                     "part": "prompt" if t < len(following) - n_response else "response"})
    return rows


# ------------------------------------------------------------------------------------------------- printing

def render(rows: list[dict], header: list[str], sums: dict | None = None, prompt_trained: bool = False) -> str:
    """The table, then the counts; with sums (a trained run), the example's loss and the mean CE of each part."""
    width = max(14, *(len(r["token"]) for r in rows), *(len(r["next_token"]) for r in rows))
    lines = [*header, "", f"{'pos':>4}  {'token':<{width}} {'id':>6}  -> {'next token':<{width}} "
                          f"{'role':<8} {'weight':>6}" + ("  loss (nats)" if sums else "")]
    for r in rows:
        weight = f"{r['weight']:.3f}" if r["target"] else "-"
        loss = "" if r["loss"] is None else (f"  {r['loss']:.3f}" if r["target"] else f"  ({r['loss']:.3f})")
        lines.append(f"{r['pos']:>4}  {r['token']:<{width}} {r['id']:>6}  -> {r['next_token']:<{width}} "
                     f"{'target' if r['target'] else 'ignored':<8} {weight:>6}{loss}")
    n_target = sum(r["target"] for r in rows)
    lines += ["", f"{len(rows)} positions: {len(rows) - n_target} ignored (targets set to {IGNORE}), "
                  f"{n_target} targets (the last one is <|endoftext|>: the model learns to stop)"]
    if sums:
        ratio = sums["weighted"] / max(sums["weight"], 1e-12)
        lines += [f"SFTObjective: sum w*CE = {sums['weighted']:.4f}, sum w = {sums['weight']:.4f} over "
                  f"{sums['tokens']} target tokens -> weighted loss {ratio:.4f} nats",
                  f"  alone, the weight cancels (= mean CE {sums['nll'] / max(sums['tokens'], 1):.4f}); in a step "
                  "it sets this example's share against the others"]
        # Whether the run learned to write prompts is the run's setting: a validation example is always masked.
        for name, part, trained in (("the prompt's tokens", "prompt", prompt_trained),
                                    ("the response + <|endoftext|>", "response", True)):
            part = [r["loss"] for r in rows if r["part"] == part]
            if part:
                lines.append(f"  mean CE predicting {name}: {sum(part) / len(part):.4f} "
                             f"({'trained' if trained else 'never trained: masked'})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minisft.explain", description=__doc__.split("\n")[0])
    p.add_argument("index", nargs="?", type=int, help="which record of the data file (0-based, after loading; "
                                                      "default 0)")
    p.add_argument("--id", help="the record with this id instead of an index")
    p.add_argument("--model", default="tiny", help="tiny (tokenizer trained as train.py --model tiny does; no "
                                                   "losses) or a run folder (its tokenizer, template, weights and "
                                                   "model: + losses). Default: tiny")
    p.add_argument("--data", help="data file (default: data/tweets.jsonl, or the run's own)")
    p.add_argument("--template", help="tiny only: prompt template name (default: train.py's)")
    p.add_argument("--weights", choices=SCHEMES, help="tiny only: weighting scheme (default: train.py's)")
    p.add_argument("--train-on-prompt", action="store_true", help="tiny only: no prompt mask, as train.py's flag")
    p.add_argument("--condition", choices=("auto", *MEASURES), help="tiny only: the engagement line in the prompt "
                   "(default: train.py's)")
    p.add_argument("--engagement", choices=SIGNALS, help="tiny only: what weights and condition measure (default: "
                   "train.py's)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.index is not None and args.id is not None:
        parser.error("give a record index or --id, not both")
    ckpt = None
    if args.model == "tiny":
        cfg = TrainConfig(model="tiny", train_on_prompt=args.train_on_prompt)  # train.py's defaults, and:
        cfg.template, cfg.weights = args.template or cfg.template, args.weights or cfg.weights
        cfg.condition, cfg.engagement = args.condition or cfg.condition, args.engagement or cfg.engagement
    elif (Path(args.model) / "run_config.json").is_file():
        own = [f for f in ("template", "weights", "condition", "engagement") if getattr(args, f)]
        own += ["train_on_prompt"] * args.train_on_prompt
        if own:
            parser.error(f"--{own[0].replace('_', '-')}: a run folder is explained with its own settings "
                         "(run_config.json); drop the flag")
        cfg = TrainConfig.load(Path(args.model) / "run_config.json")
        try:
            ckpt = checkpoint_folder(args.model)
        except (FileNotFoundError, ValueError) as e:  # a run still starting, or a damaged one
            parser.error(f"--model {args.model}: {e}")
    else:
        parser.error(f"--model {args.model}: expected tiny or a run folder (with run_config.json)")
    cfg.data = args.data or cfg.data
    index = None if args.id is not None else (args.index or 0)
    try:
        record, ex, split, model, tok, data = load_example(cfg, index, args.id, ckpt)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    bucket = data.split.buckets.get(record["id"]) if split == "train" and data.split.condition and \
        data.split.condition.keeps_line(record["id"]) else None
    prompt = render_prompt(cfg.template, with_bucket(record["instruction"], bucket))
    header = [f"record {record['id']} of {cfg.data} | split: {split} | template {cfg.template} | "
              f"weights {weight_scheme(cfg)}" + (f" | model {args.model}" if ckpt else " | tiny tokenizer (no model)"),
              f"prompt:   {prompt!r}",
              f"response: {record['response']!r}  (likes {record.get('likes')}, comments {record.get('comments')})",
              engagement_line(record, data.split.train)]
    if ex is None:
        print("\n".join(header + [f"no example: {split}"]))
        return 1
    losses, sums = token_losses(model, tok, ex) if ckpt is not None else (None, None)
    n_response = len(tok.encode(response_text(prompt, record["response"]))) + 1  # + the end-of-text
    print(render(explain_rows(tok, ex, losses, n_response), header, sums, cfg.train_on_prompt))
    return 0


if __name__ == "__main__":
    sys.exit(main())

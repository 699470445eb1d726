"""Is this run writing good tweets? Validation loss plus the quality of tweets it generates for held-out prompts.

    python -m minisft.evaluate runs/my-run                 # 50 held-out instructions x 4 tweets each
    python -m minisft.evaluate runs/my-run --num-prompts 20 --k 2 --wandb auto

Loss alone can't answer "are the tweets good": a model can lower its loss by memorising, by writing the same safe
tweet for every prompt, or by never stopping. So next to the loss we generate tweets and measure them:

  1. the held-out instructions are FIXED: the run's own validation split, rebuilt exactly as training built it
     (run_config.json -> data.load_split, the same call training makes), the first N in file order;
  2. K tweets per instruction, sampled with fixed seeds (temperature 0.8, top-p 0.95 unless told otherwise), each
     prompt wrapped in the checkpoint's own template: same settings, same prompts, comparable runs;
  3. each tweet is scored: length, ended with <|endoftext|>, novelty vs the training split, topic adherence
     (metrics.py), and expected likes. On the shipped synthetic set the generator's own engagement model is the
     judge (datagen.expected_engagement); on imported real data a ridge predictor fitted on the training split is
     (predictor.py), and its held-out R^2 is reported with it, so you know how far to trust it.
The validation loss is objective.validation_loss, the training loop's own, in the run's precision.

Writes <run>/eval.json (settings + metrics) and <run>/eval_samples.jsonl (one row per tweet), and a W&B table.
The metric names are the same everywhere: val/... as in metrics.jsonl, eval/... for the tweets, in eval.json, W&B
and the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from minisft import data as D
from minisft.config import TrainConfig
from minisft.objective import SFTObjective, validation_loss
from minisft.precision import pick_device, pick_precision
from minisft.pretrained import load_model, load_tokenizer
from minisft.runs import checkpoint_folder
from minisft.sampling import generate
from minisft.templates import format_prompt, load_template
from minisft.tweets import judges
from minisft.tweets.metrics import CopyDetector, on_topic, text_quality, within_limit

DEFAULTS = dict(num_prompts=50, k=4, seed=0, max_new_tokens=128, temperature=0.8, top_k=0, top_p=0.95,
                batch_size=64)


# ------------------------------------------------------------------------------------------ the tweets

def generate_tweets(model, tok, fmt: str, records: list[dict], k: int, seed: int, max_new_tokens: int,
                    temperature: float, top_k: int, top_p: float, batch_size: int) -> list[dict]:
    """K tweets per record: sample round j uses seeds seed + 1000 * j + batch number, so every run sees the same.

    A row "ended" when the model wrote <|endoftext|> itself: generate() then returns fewer than max_new_tokens
    tokens. A tweet cut by the budget is the sign of a model that never learned to stop.
    """
    prompts = [tok.encode(format_prompt(fmt, r["instruction"])) for r in records]
    rows = []
    for j in range(k):
        for b, start in enumerate(range(0, len(records), batch_size)):
            outs = generate(model, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                            temperature=temperature, top_k=top_k, top_p=top_p, eos_id=tok.eos_id,
                            seed=seed + 1000 * j + b)
            for i, out in enumerate(outs, start=start):
                r = records[i]
                rows.append({"prompt": i, "id": r["id"], "sample": j, "instruction": r["instruction"],
                             "topic": r.get("topic"), "source": r.get("source"), "text": tok.decode(out).strip(),
                             "ended": len(out) < max_new_tokens})
    return rows


def sample_tweets(model, tok, fmt: str, records: list[dict], seed: int, judge: judges.Judge) -> list[dict]:
    """A few tweets for fixed validation instructions, to watch what a model learns while it trains (the same seeds
    at every evaluation), each with its expected likes from the run's judge."""
    rows = generate_tweets(model, tok, fmt, records, k=1, seed=seed, max_new_tokens=96, temperature=0.8, top_k=0,
                           top_p=0.95, batch_size=len(records) or 1)
    return [{"instruction": r["instruction"], "text": r["text"], "chars": len(r["text"]),
             "expected_likes": judge.score(r["text"], records[r["prompt"]]), "judge": judge.name} for r in rows]


def score_tweets(rows: list[dict], score, copies: CopyDetector, records: list[dict]) -> None:
    """Add chars, within_280, expected_likes, novel, on_topic to each generated row (in place)."""
    for row in rows:
        text, record = row["text"], records[row["prompt"]]
        likes = score(text, record)
        row.update(chars=len(text), within_280=within_limit(text),
                   expected_likes=None if likes is None else round(likes, 3),
                   novel=copies.is_novel(text), on_topic=on_topic(text, row["topic"]))


def summarise(rows: list[dict], copies: CopyDetector, score, eval_records: list[dict]) -> dict:
    """The tweet metrics over all generated rows, and the same engagement score for the held-out human tweets."""
    m = text_quality([r["text"] for r in rows], [r["topic"] for r in rows], copies)
    m["ended"] = sum(r["ended"] for r in rows) / len(rows)
    likes = [r["expected_likes"] for r in rows if r["expected_likes"] is not None]
    reference = [x for r in eval_records if (x := score(r["response"], r)) is not None]
    m["expected_likes_mean"] = statistics.fmean(likes) if likes else None
    m["expected_likes_median"] = statistics.median(likes) if likes else None
    # The same judge on the human tweets of the same instructions: the level a perfect imitator would reach.
    m["reference_likes_mean"] = statistics.fmean(reference) if reference else None
    # Generated / human on the same prompts: comparable across runs whose held-out prompts differ (another seed).
    m["likes_vs_reference"] = (m["expected_likes_mean"] / m["reference_likes_mean"]
                               if likes and reference and m["reference_likes_mean"] > 0 else None)
    m["tweets"] = len(rows)
    return m


# ----------------------------------------------------------------------------------------------- all of it

def evaluate_run(run_dir, num_prompts: int = 50, k: int = 4, seed: int = 0, max_new_tokens: int = 128,
                 temperature: float = 0.8, top_k: int = 0, top_p: float = 0.95, batch_size: int = 64,
                 device: str = "auto", data: str | None = None, wandb: str = "disabled", wandb_run=None,
                 quiet: bool = False, dataset: D.Dataset | None = None) -> dict:
    """Evaluate the latest checkpoint of a run folder; write eval.json and eval_samples.jsonl; return eval.json.

    wandb_run: an open W&B run to log to (the training loop passes its own); else wandb="online"/"offline"/"auto"
    reopens the run's W&B run (its id is in the checkpoint's state.pt) and logs there.
    """
    run_dir = Path(run_dir)
    ckpt = checkpoint_folder(run_dir)  # a folder of runs, or no run at all, is one clear error here
    if not (run_dir / "run_config.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no run_config.json: evaluate takes a run folder made by train.py "
                                "(its config says which data and split to evaluate on)")
    cfg = TrainConfig.load(run_dir / "run_config.json")
    cfg.data = data or cfg.data
    if dataset is None and not Path(cfg.data).exists():
        raise FileNotFoundError(f"{run_dir / 'run_config.json'}: data: {cfg.data} not found (was the run trained "
                                "from another folder?): pass --data PATH")
    dev = pick_device(device)
    model = load_model(str(ckpt)).to(dev).eval()
    tok = load_tokenizer(str(ckpt))
    template, fmt = load_template(ckpt)
    if dataset is None:  # training passes its own: the file is read once per run
        dataset = D.prepare(cfg, tok, fmt, D.example_length(cfg.max_len, model.config.n_positions))
    train, val = dataset.split.train, dataset.split.val
    if not val:
        raise ValueError(f"{run_dir}: the validation split is empty: nothing held out to evaluate on")

    precision = pick_precision(dev, cfg.dtype, model.num_params())  # the run's own, as training measured it
    metrics = validation_loss(SFTObjective(model, fast=cfg.fast_head), dataset.val, batch_size, tok.eos_id, precision)
    eval_records = val[:num_prompts]
    rows = generate_tweets(model, tok, fmt, eval_records, k, seed, max_new_tokens, temperature, top_k, top_p,
                           batch_size)
    judge = judges.grader(train, val)
    copies = CopyDetector(r["response"] for r in train)
    score_tweets(rows, judge.score, copies, eval_records)
    tweet_metrics = {**summarise(rows, copies, judge.score, eval_records), **judge.info}
    metrics.update({f"eval/{k}": v for k, v in tweet_metrics.items()})
    result = {"run": str(run_dir), "checkpoint": str(ckpt), "step": _step_of(ckpt), "template": template,
              "engagement_scorer": judge.name,
              "settings": dict(num_prompts=len(eval_records), k=k, seed=seed, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_k=top_k, top_p=top_p),
              "metrics": metrics}
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(run_dir / "eval_samples.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if wandb_run is not None or wandb != "disabled":
        log_to_wandb(run_dir, cfg, ckpt, result, rows, wandb, wandb_run)
    if not quiet:
        print_summary(result, rows)
    return result


def _step_of(ckpt: Path) -> int | None:
    name = ckpt.name
    return int(name.split("-")[1]) if name.startswith("step-") and name[5:].isdigit() else None


def log_to_wandb(run_dir: Path, cfg: TrainConfig, ckpt: Path, result: dict, rows: list[dict], mode: str,
                 run=None) -> None:
    import wandb

    own = run is None
    if own:
        from minisft.checkpoint import load_train_state
        from minisft.tracking import wandb_logged_in

        state = load_train_state(ckpt) if (ckpt / "state.pt").exists() else {}
        run_id = state.get("wandb_id")
        mode = ("online" if wandb_logged_in() else "offline") if mode == "auto" else mode
        run = wandb.init(project=cfg.wandb_project, dir=str(run_dir), id=run_id, mode=mode, name=run_dir.name,
                         resume="allow" if run_id else None)
    numbers = {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float))}
    columns = ["instruction", "topic", "text", "chars", "ended", "expected_likes", "novel", "on_topic"]
    table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
    run.log({**numbers, "eval/samples": table})  # no step: a finished run only accepts steps after its last one
    run.summary.update(numbers)
    if own:
        run.finish()


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def print_summary(result: dict, rows: list[dict], shown: int = 3) -> None:
    m, s = {k.split("/", 1)[1]: v for k, v in result["metrics"].items()}, result["settings"]
    print(f"evaluated {result['checkpoint']} on {s['num_prompts']} held-out instructions x {s['k']} tweets "
          f"(T={s['temperature']}, top-p={s['top_p']}, seed {s['seed']})")
    print(f"  val loss {_fmt(m.get('loss'))} (unweighted {_fmt(m.get('loss_unweighted'))}, "
          f"ppl {_fmt(m.get('ppl'), 1)})")
    print(f"  within 280 chars {_fmt(m['within_280'], 2)} | ended {_fmt(m['ended'], 2)} | distinct-1 "
          f"{_fmt(m['distinct_1'], 2)} distinct-2 {_fmt(m['distinct_2'], 2)} | repeated 3-gram "
          f"{_fmt(m['repeated_3gram'], 2)} | novel {_fmt(m['novelty'], 2)} | on topic {_fmt(m['on_topic'], 2)}")
    judge = result["engagement_scorer"]
    trust = f", predictor R^2 on val {_fmt(m.get('predictor_r2'), 2)}" if judge == "predictor" else ""
    if judge == "none":
        trust = f": {m.get('judge_note')}"
    print(f"  expected likes ({judge}{trust}): mean {_fmt(m['expected_likes_mean'], 1)}, median "
          f"{_fmt(m['expected_likes_median'], 1)} (held-out human tweets: {_fmt(m['reference_likes_mean'], 1)})")
    for row in rows[:shown]:
        print(f"  > {row['instruction']}\n    {row['text'][:200]!r}")
    print(f"  wrote {Path(result['run']) / 'eval.json'} and eval_samples.jsonl")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minisft.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", help="run folder (runs/<name>); its latest checkpoint is evaluated")
    p.add_argument("--num-prompts", type=int, default=DEFAULTS["num_prompts"],
                   help="held-out instructions: the first N of the run's validation split")
    p.add_argument("--k", type=int, default=DEFAULTS["k"], help="tweets generated per instruction")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="sampling seed (same seed = same tweets)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"],
                   help="token budget per tweet; a tweet that hits it did not 'end'")
    p.add_argument("--temperature", type=float, default=DEFAULTS["temperature"], help="sampling temperature")
    p.add_argument("--top-k", type=int, default=DEFAULTS["top_k"], help="top-k filter (0 = off)")
    p.add_argument("--top-p", type=float, default=DEFAULTS["top_p"], help="nucleus filter (1 = off)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="prompts per generation batch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--data", default=None, help="the run's data file, if it moved (default: from run_config.json)")
    p.add_argument("--wandb", default="disabled", choices=("auto", "online", "offline", "disabled"),
                   help="also log the metrics and a table of the tweets to the run's W&B run")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_prompts < 1 or args.k < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
        print("error: --num-prompts, --k, --batch-size and --max-new-tokens must be at least 1", file=sys.stderr)
        return 2
    try:
        evaluate_run(args.run, num_prompts=args.num_prompts, k=args.k, seed=args.seed,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                     top_p=args.top_p, batch_size=args.batch_size, device=args.device, data=args.data,
                     wandb=args.wandb)
    except (FileNotFoundError, ValueError) as e:  # DataError, CheckpointError, bad settings are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

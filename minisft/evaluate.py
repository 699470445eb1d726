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
from minisft.best_of_n import best_of_n
from minisft.conditioning import BUCKETS, ask_bucket, with_bucket
from minisft.config import TrainConfig
from minisft.objective import SFTObjective, validation_loss
from minisft.precision import DTYPES, pick_device, pick_precision
from minisft.pretrained import load_model, load_tokenizer
from minisft.runs import checkpoint_folder
from minisft.sampling import for_inference, inference_dtype
from minisft.templates import format_prompt, load_condition, load_template
from minisft.tweets import judges
from minisft.tweets.metrics import CopyDetector, bootstrap_interval, on_topic, text_quality, within_limit

DEFAULTS = dict(num_prompts=50, k=4, seed=0, max_new_tokens=128, temperature=0.8, top_k=0, top_p=0.95,
                batch_size=64)


# ------------------------------------------------------------------------------------------ the tweets

def generate_tweets(model, tok, fmt: str, records: list[dict], k: int, seed: int, max_new_tokens: int,
                    temperature: float, top_k: int, top_p: float, batch_size: int, bucket: int | None = None,
                    best_of: int = 1, picker=None) -> list[dict]:
    """K tweets per record: sample round j uses seeds seed + 1000 * j + batch number, so every run sees the same.

    bucket: the engagement bucket asked for in each prompt (conditioning.py), or None for no line.
    best_of > 1: each tweet is the best of that many candidates by the picker's score (best_of_n.py); every row
    keeps the candidates' scores. A row "ended" when the model wrote <|endoftext|> itself: generate() then returns
    fewer than max_new_tokens tokens. A tweet cut by the budget is the sign of a model that never learned to stop.
    """
    prompts = [tok.encode(format_prompt(fmt, with_bucket(r["instruction"], bucket))) for r in records]
    per_call = max(1, batch_size // best_of)  # prompts per generate() call: rows = prompts x candidates

    def scores(i, candidates):  # the picker's score of each candidate (1.0 = a typical tweet of the author)
        if picker is None:
            return [0.0] * len(candidates)
        return picker.factor([tok.decode(c).strip() for c in candidates], [records[i]] * len(candidates))

    rows = []
    for j in range(k):
        for b, start in enumerate(range(0, len(records), per_call)):
            batch = prompts[start:start + per_call]
            picked = best_of_n(model, batch, best_of, lambda i, c: scores(start + i, c), max_new_tokens,
                               temperature=temperature, top_k=top_k, top_p=top_p, eos_id=tok.eos_id,
                               seed=seed + 1000 * j + b)
            for i, pick in enumerate(picked, start=start):
                r, out = records[i], pick["tokens"]
                rows.append({"prompt": i, "id": r["id"], "sample": j, "instruction": r["instruction"],
                             "topic": r.get("topic"), "source": r.get("source"), "author": r.get("author"),
                             "text": tok.decode(out).strip(), "ended": len(out) < max_new_tokens,
                             **({"picker_scores": pick["scores"], "picked": pick["best"]} if best_of > 1 else {})})
    return rows


def sample_tweets(model, tok, fmt: str, records: list[dict], seed: int, judge: judges.Judge,
                  bucket: int | None = None) -> list[dict]:
    """A few tweets for fixed validation instructions, to watch what a model learns while it trains (the same seeds
    at every evaluation), each with its expected likes from the run's judge."""
    rows = generate_tweets(model, tok, fmt, records, k=1, seed=seed, max_new_tokens=96, temperature=0.8, top_k=0,
                           top_p=0.95, batch_size=len(records) or 1, bucket=bucket)
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


def likes_summary(groups: list[list[float]], prefix: str = "") -> dict:
    """Mean and median expected likes over all tweets, and a bootstrap 95% interval of the mean over prompts."""
    likes = [x for g in groups for x in g]
    interval = bootstrap_interval(groups)
    return {f"{prefix}expected_likes_mean": statistics.fmean(likes) if likes else None,
            f"{prefix}expected_likes_median": statistics.median(likes) if likes else None,
            f"{prefix}expected_likes_ci_low": interval and interval[0],
            f"{prefix}expected_likes_ci_high": interval and interval[1]}


def summarise(rows: list[dict], copies: CopyDetector, score, eval_records: list[dict]) -> dict:
    """Every tweet metric of the generated rows, and the SAME metric of the held-out human tweets of the same
    prompts (human_...): a number means little until it sits beside what people wrote.

    Distinct-n is computed within each sample round (one tweet per prompt, like the humans' one tweet per prompt)
    and averaged: pooling K rounds would compare 4x more generated text with the human tweets."""
    k = max(r["sample"] for r in rows) + 1
    m = text_quality([r["text"] for r in rows], [r["topic"] for r in rows], copies)
    rounds = [text_quality([r["text"] for r in rows if r["sample"] == j], [r["topic"] for r in rows
                                                                          if r["sample"] == j]) for j in range(k)]
    for key in ("distinct_1", "distinct_2"):
        m[key] = statistics.fmean(q[key] for q in rounds)
    m["ended"] = sum(r["ended"] for r in rows) / len(rows)
    groups = [[r["expected_likes"] for r in rows if r["prompt"] == i and r["expected_likes"] is not None]
              for i in range(len(eval_records))]
    m.update(likes_summary(groups))
    human = text_quality([r["response"] for r in eval_records], [r.get("topic") for r in eval_records], copies)
    human.update(likes_summary([[x] for r in eval_records if (x := score(r["response"], r)) is not None]))
    m.update({f"human_{key}": value for key, value in human.items()})
    # Generated / human on the same prompts: comparable across runs whose held-out prompts differ (another seed).
    m["likes_vs_human"] = (m["expected_likes_mean"] / m["human_expected_likes_mean"]
                           if m["expected_likes_mean"] is not None and m["human_expected_likes_mean"] else None)
    m["tweets"] = len(rows)
    return m


def sampling_model(model, device, dtype: str = "auto"):
    """The model the tweets are sampled from, in `dtype` ("auto": sampling.inference_dtype, as sample.py does).

    The checkpoint as loaded when it already is in that precision (the tiny model: fp32), else a cast copy laid
    out for decoding (sampling.for_inference: bf16 weights, prepacked on a CPU with bf16 units, at GPT-2 sizes).
    """
    want = inference_dtype(device, model.num_params()) if dtype == "auto" else DTYPES[dtype]
    return model if want == model.transformer.wte.weight.dtype else for_inference(model, want)


# ----------------------------------------------------------------------------------------------- all of it

def evaluate_run(run_dir, num_prompts: int = 50, k: int = 4, seed: int = 0, max_new_tokens: int = 128,
                 temperature: float = 0.8, top_k: int = 0, top_p: float = 0.95, batch_size: int = 64,
                 device: str = "auto", data: str | None = None, wandb: str = "disabled", wandb_run=None,
                 quiet: bool = False, dataset: D.Dataset | None = None, bucket: str = "auto",
                 best_of: int = 1, dtype: str = "auto") -> dict:
    """Evaluate the latest checkpoint of a run folder; write eval.json and eval_samples.jsonl; return eval.json.

    bucket: the engagement bucket to ask for (conditioning.parse_bucket); "auto" = the top one on a conditioned
    run, none otherwise. best_of: each tweet the best of N candidates by the run's picker (judge.json); the
    grader is another judge (tweets/judges.py). dtype: the precision the tweets are sampled in (sampling_model).
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
    asked = ask_bucket(bucket, load_condition(ckpt))
    picker = judges.load_picker(run_dir) if best_of > 1 else None
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
    objective = SFTObjective(model, fast=cfg.fast_head)
    metrics = validation_loss(objective, dataset.val, batch_size, tok.eos_id, precision)
    if dataset.val_bucketed:
        metrics.update(validation_loss(objective, dataset.val_bucketed, batch_size, tok.eos_id, precision,
                                       prefix="val_bucket/"))
    eval_records = val[:num_prompts]
    sampler = sampling_model(model, dev, dtype)
    rows = generate_tweets(sampler, tok, fmt, eval_records, k, seed, max_new_tokens, temperature, top_k, top_p,
                           batch_size, asked, best_of, picker)
    judge = judges.grader(train, val)
    copies = CopyDetector(r["response"] for r in train)
    score_tweets(rows, judge.score, copies, eval_records)
    tweet_metrics = {**summarise(rows, copies, judge.score, eval_records), **judge.info}
    metrics.update({f"eval/{k}": v for k, v in tweet_metrics.items()})
    result = {"run": str(run_dir), "checkpoint": str(ckpt), "step": _step_of(ckpt), "template": template,
              "engagement_scorer": judge.name,
              "settings": dict(num_prompts=len(eval_records), k=k, seed=seed, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_k=top_k, top_p=top_p, best_of=best_of,
                               engagement_bucket=None if asked is None else BUCKETS[asked],
                               dtype=str(sampler.transformer.wte.weight.dtype).removeprefix("torch.")),
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
    asked = f", asking for {s['engagement_bucket']}" if s.get("engagement_bucket") else ""
    best = f", each the best of {s['best_of']} by the picker" if s.get("best_of", 1) > 1 else ""
    print(f"evaluated {result['checkpoint']} on {s['num_prompts']} held-out instructions x {s['k']} tweets "
          f"(T={s['temperature']}, top-p={s['top_p']}, seed {s['seed']}{asked}{best})")
    print(f"  val loss {_fmt(m.get('loss'))} (unweighted {_fmt(m.get('loss_unweighted'))}, "
          f"ppl {_fmt(m.get('ppl'), 1)})" + (f" | with the true bucket {_fmt(result['metrics']['val_bucket/loss'])}"
                                             if "val_bucket/loss" in result["metrics"] else ""))

    def pair(key, digits=2):  # generated (human)
        return f"{_fmt(m[key], digits)} ({_fmt(m.get('human_' + key), digits)})"

    print(f"  generated (human tweets of the same prompts): within 280 chars {pair('within_280')} | ended "
          f"{_fmt(m['ended'], 2)} | distinct-1 {pair('distinct_1')} distinct-2 {pair('distinct_2')}")
    print(f"  repeated 3-gram {pair('repeated_3gram')} | novel {pair('novelty')} | on topic {pair('on_topic')} | "
          f"hook {pair('hook_share')} | emoji/tweet {pair('emoji_per_tweet')} | chars {pair('mean_chars', 0)}")
    judge = result["engagement_scorer"]
    trust = f", R^2 on val {_fmt(m.get('predictor_r2'), 2)}" if judge == "learned" else ""
    if judge == "none":
        trust = f": {m.get('judge_note')}"
    print(f"  expected likes ({judge}{trust}): mean {_fmt(m['expected_likes_mean'], 1)} [95% interval "
          f"{_fmt(m['expected_likes_ci_low'], 1)}-{_fmt(m['expected_likes_ci_high'], 1)}], median "
          f"{_fmt(m['expected_likes_median'], 1)}; human tweets {_fmt(m['human_expected_likes_mean'], 1)} "
          f"(x{_fmt(m['likes_vs_human'], 2)})")
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
    p.add_argument("--engagement-bucket", default="auto",
                   help="on a run trained with --condition: the engagement bucket each prompt asks for (top, "
                        "60-80, 40-60, 20-40, bottom, or none for no line); auto = top on such runs")
    p.add_argument("--best-of", type=int, default=1,
                   help="each tweet is the best of N candidates by the run's picker (judge.json), graded by "
                        "another judge (minisft/tweets/judges.py)")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                   help="precision the tweets are sampled in; auto = sample.py's (bf16 at GPT-2 sizes where the "
                        "hardware has it, else the checkpoint's fp32)")
    p.add_argument("--wandb", default="disabled", choices=("auto", "online", "offline", "disabled"),
                   help="also log the metrics and a table of the tweets to the run's W&B run")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.num_prompts, args.k, args.batch_size, args.max_new_tokens, args.best_of) < 1:
        print("error: --num-prompts, --k, --batch-size, --max-new-tokens and --best-of must be at least 1",
              file=sys.stderr)
        return 2
    try:
        evaluate_run(args.run, num_prompts=args.num_prompts, k=args.k, seed=args.seed,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                     top_p=args.top_p, batch_size=args.batch_size, device=args.device, data=args.data,
                     wandb=args.wandb, bucket=args.engagement_bucket, best_of=args.best_of, dtype=args.dtype)
    except (FileNotFoundError, ValueError) as e:  # DataError, CheckpointError, bad settings are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

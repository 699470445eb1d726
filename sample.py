"""Sample tweets from a fine-tuned model: python sample.py --prompt "Write a witty tweet about debugging".

By default the newest run under runs/ is used, and each prompt is wrapped in the template that run was trained
with (its template.json), because a fine-tuned model only answers prompts laid out the way it learned them.
--raw sends the text as is (for base models). The decoding itself lives in minisft/sampling.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from minisft import pretrained, runs, templates
from minisft.best_of_n import best_of_n
from minisft.conditioning import BUCKETS, ask_bucket, with_bucket
from minisft.precision import DTYPES, pick_device
from minisft.sampling import (PromptTruncatedWarning, SettingError, check_settings, fit_prompts, for_inference,
                              inference_dtype)
from minisft.tweets import judges
from minisft.tweets.metrics import TWEET_LIMIT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sample.py", description="Generate tweets from a fine-tuned GPT-2 (the latest run by default).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Example: python sample.py --prompt "Write a witty tweet about debugging" --num-samples 3')
    p.add_argument("--prompt", help="the instruction; '-' reads one prompt per line from standard input")
    p.add_argument("--prompts-file", help="a text file with one prompt per line (blank lines are skipped)")
    p.add_argument("--model", help="a run folder, a checkpoint folder, or gpt2 | gpt2-medium | gpt2-large | "
                                   "gpt2-xl (default: the newest run in --runs-dir)")
    p.add_argument("--runs-dir", default="runs", help="where to look for the newest run when --model is not given (default: %(default)s)")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, without the run's template (for base "
                                                      "models); an empty --raw prompt samples from <|endoftext|>")
    p.add_argument("--num-samples", type=int, default=1, help="tweets per prompt (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=100, help="stop a tweet after this many tokens (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="< 1 is safer, > 1 wilder; 0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=50, help="sample only from the k likeliest tokens (0 = off; default: %(default)s)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus: the fewest tokens whose probability sums to "
                                                             "p, in (0, 1] (1 = off; default: %(default)s)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages tokens already used "
                                                                         "(1 = off, the default)")
    p.add_argument("--seed", type=int, default=None, help="make the samples reproducible (default: a fresh random seed)")
    p.add_argument("--batch-size", type=int, default=16, help="rows decoded together (prompts x samples; default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto = a GPU when there is one)")
    p.add_argument("--dtype", default="auto", choices=("auto", *DTYPES),
                   help="inference precision; auto = bf16 where the hardware has it (GPU, or CPU with AVX512-BF16 for "
                        "models of 16M+ parameters), else fp32 (default: auto)")
    p.add_argument("--fast-decode", action=argparse.BooleanOptionalAction, default=True,
                   help="on CPU, lay the weights out for one-token steps (minisft/fast_decode.py: bf16 prepacked for "
                        "oneDNN, fp32 transposed); --no-fast-decode keeps plain nn.Linear layers: same tweets, slower")
    p.add_argument("--engagement-bucket", default="auto",
                   help="for a model trained with --condition: the engagement bucket to ask for (top, 60-80, 40-60, "
                        "20-40, bottom, or none for no line; default: auto = top for such models)")
    p.add_argument("--best-of", type=int, default=1,
                   help="draw N candidates per tweet and keep the one the run's judge (judge.json) scores highest; "
                        "--json lists every candidate with its score (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text blocks")
    return p


def check(args) -> str | None:
    """Bad values fail here, naming the flag, before any model is loaded. The decoding settings are checked by the
    sampler's own check_settings, the one place their ranges are written down."""
    if args.prompt is None and args.prompts_file is None:
        return "give --prompt TEXT, --prompt - (standard input) or --prompts-file FILE"
    if args.prompt is not None and args.prompts_file is not None:
        return "give either --prompt or --prompts-file, not both"
    for flag in ("num_samples", "max_new_tokens", "batch_size", "best_of"):
        if getattr(args, flag) < 1:
            return f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}"
    try:
        check_settings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.repetition_penalty)
    except SettingError as e:
        return f"--{e.name.replace('_', '-')} {e.rule}"
    return None


def read_prompts(args) -> list[str]:
    if args.prompts_file is not None:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise ValueError(f"--prompts-file: {path} does not exist")
        lines = path.read_text().splitlines()
    elif args.prompt == "-":
        lines = sys.stdin.read().splitlines()
    else:
        return [args.prompt]
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{'--prompts-file ' + args.prompts_file if args.prompts_file else '--prompt -'}: "
                         "no prompts (one per line)")
    return prompts


def load(args):
    """-> (model, tokenizer, template format, bucket asked for, picker or None, where it came from).
    Raises with a message for parser.error."""
    if args.model is None or Path(args.model).exists():
        folder = runs.checkpoint_folder(args.model or runs.latest_run(args.runs_dir))
        source = str(folder)
    else:  # a name: gpt2 ... (from the Hugging Face cache, or the Hub when online)
        folder, source = pretrained.resolve(args.model), args.model
    bucket = None if args.raw else ask_bucket(args.engagement_bucket, templates.load_condition(folder))
    picker = judges.load_picker(folder) if args.best_of > 1 else None
    model = pretrained.load_model(str(folder))
    tok = pretrained.load_tokenizer(str(folder))
    _, fmt = templates.load_template(folder)
    return model, tok, fmt, bucket, picker, source


def encode_prompts(prompts, tok, fmt, raw, bucket=None) -> list[list[int]]:
    if raw:  # an empty raw prompt: start from <|endoftext|>, GPT-2's document separator (unconditional sample)
        return [tok.encode(p) or [tok.eos_id] for p in prompts]
    return [tok.encode(templates.format_prompt(fmt, with_bucket(p, bucket))) for p in prompts]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check(args)
    if problem:
        parser.error(problem)
    try:
        prompts = read_prompts(args)
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as e:  # read_prompts' messages name their flag; torch.device's don't
        parser.error(str(e) if str(e).startswith("--") else f"--device {args.device}: {e}")
    try:
        model, tok, fmt, bucket, picker, source = load(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # no run, bad folder, unknown model: no traceback
        parser.error(f"--model {args.model}: {e}" if args.model else str(e))
    if not args.raw and any(not p.strip() for p in prompts):
        parser.error("--prompt: empty instruction (use --raw with an empty prompt for an unconditional sample)")
    dtype = inference_dtype(device, model.num_params()) if args.dtype == "auto" else DTYPES[args.dtype]
    model = for_inference(model.to(device), dtype, copy=False, fast=args.fast_decode)  # in place: no second copy

    ids = encode_prompts(prompts, tok, fmt, args.raw, bucket)
    try:  # cut from the left where the context is too short, with a notice for each prompt cut
        with warnings.catch_warnings(record=True) as cut:
            warnings.simplefilter("always", PromptTruncatedWarning)
            ids = fit_prompts(ids, model.config.n_positions, args.max_new_tokens, [repr(p[:50]) for p in prompts])
    except SettingError as e:
        parser.error(f"--{e.name.replace('_', '-')} {e.rule}")
    for w in cut:
        print(f"notice: prompt {w.message}", file=sys.stderr)

    generator = torch.Generator(device=device)
    generator.manual_seed(args.seed) if args.seed is not None else generator.seed()
    rows = [(i, j) for i in range(len(prompts)) for j in range(args.num_samples)]  # (prompt, sample) pairs
    for start in range(0, len(rows), args.batch_size):
        batch = rows[start:start + args.batch_size]

        def scores(row, candidates):  # the picker's score: this candidate's likes as a multiple of the usual
            texts = [tok.decode(c).strip() for c in candidates]
            return picker.factor(texts, [{}] * len(texts)) if picker else [0.0] * len(texts)

        picked = best_of_n(model, [ids[i] for i, _ in batch], args.best_of, scores, args.max_new_tokens,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           repetition_penalty=args.repetition_penalty, eos_id=tok.eos_id, generator=generator)
        for (i, j), pick in zip(batch, picked):
            out = pick["tokens"]
            text = tok.decode(out).strip()
            finished = len(out) < args.max_new_tokens  # generate() drops the end token, so a finished row is shorter
            record = {"prompt": prompts[i], "text": text, "chars": len(text), "n_tokens": len(out),
                      "finished": finished, "sample": j + 1, "model": source,
                      "engagement_bucket": None if bucket is None else BUCKETS[bucket]}
            if picker is not None:
                record["score"] = pick["scores"][pick["best"]]
                record["candidates"] = [{"text": tok.decode(c).strip(), "score": s}
                                        for c, s in zip(pick["candidates"], pick["scores"])]
            print(json.dumps(record, ensure_ascii=False) if args.json else show(record, args.num_samples))
            sys.stdout.flush()
    return 0


def show(r: dict, num_samples: int) -> str:
    """A tweet as a block: a header with the prompt and the length (flagged when over the limit), then the text."""
    flags = [f"{r['chars']} chars"]
    if "candidates" in r:
        flags.append(f"best of {len(r['candidates'])}: {r['score']:.2f}x the usual likes by the judge")
    if r["chars"] > TWEET_LIMIT:
        flags.append(f"OVER {TWEET_LIMIT}")
    if not r["finished"]:
        flags.append("no end-of-text within --max-new-tokens")
    prompt = r["prompt"] if len(r["prompt"]) <= 60 else r["prompt"][:57] + "..."
    return f"--- [{r['sample']}/{num_samples}] {prompt} | {' | '.join(flags)} ---\n{r['text']}\n"


if __name__ == "__main__":
    sys.exit(main())

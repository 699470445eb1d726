#!/usr/bin/env bash
# The engagement-weighting experiment of the README: does weighting the loss by engagement make the model write
# tweets with higher expected engagement, without losing quality?
# Arms: --weights none | log | rank | linear, and the masking ablation (log + --train-on-prompt); 3 seeds each; the same
# number of steps everywhere; each run ends with the evaluation harness (50 held-out instructions x 4 tweets).
# On 2 CPU cores one run takes a few minutes; the whole grid under an hour.
#   bash experiments/engagement_weighting.sh [OUT=runs/weighting] [STEPS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/weighting}
STEPS=${2:-1000}
for seed in 0 1 2; do
  for arm in none log rank linear log-prompt; do
    name="$arm-s$seed"
    [ -f "$OUT/$name/eval.json" ] && continue  # already done: the grid can be resumed
    rm -rf "$OUT/$name"
    extra=()
    weights=$arm
    if [ "$arm" = log-prompt ]; then weights=log; extra=(--train-on-prompt); fi
    python train.py --model tiny --weights "$weights" "${extra[@]}" --seed "$seed" --max-steps "$STEPS" \
      --out "$OUT" --name "$name" --wandb disabled --no-progress --eval-every 0 --final-eval 50
  done
done
python -m minisft.report "$OUT"/*-s[0-9] --group-seeds --out "$OUT/report"

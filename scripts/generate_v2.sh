#!/usr/bin/env bash
# Generate tables v2 (the recipes chosen by the recipe search, conf/recipe/<dataset>-v2.yaml), round-robin:
# a few shards of every pair per round. Each pair's plan alternates seeds 0 and 1 per slice of
# architectures (paired_seeds=2), so that every pair gains its second seed early and any set of finished
# shards holds both seeds on a uniform sample; seed 2 follows once seeds 0 and 1 cover the space.
# Rerun to resume: finished shards are skipped; a killed run loses at most the shards in flight.
#   scripts/generate_v2.sh [shards-per-round]     (env: PAIRS, EXECUTOR, DANAS_TABLES, BIN, ARGS)
# ARGS adds generate overrides, e.g. ARGS="executor.workers=1" to leave a core to other work.
set -euo pipefail
cd "$(dirname "$0")/.."
PER_ROUND=${1:-1}
PAIRS=${PAIRS:-"digits/none digits/resnet digits/mlp mnist1d/none mnist1d/resnet mnist1d/tcn"}
EXECUTOR=${EXECUTOR:-local}
BIN=${BIN:-.venv/bin/danas-bench}
ARGS=${ARGS:-}
V2=(recipe_version=v2 'seeds=[0,1,2]' paired_seeds=2)
while :; do
  left=0
  for pair in $PAIRS; do
    out=$($BIN generate pair="$pair" executor="$EXECUTOR" "${V2[@]}" max_shards="$PER_ROUND" merge=false $ARGS 2>&1 | tee /dev/stderr)
    pending=$(sed -n 's/.* \([0-9]*\) to run.*/\1/p' <<<"$out" | head -1)
    left=$((left + ${pending:-0}))
  done
  [ "$left" -eq 0 ] && break
done
for pair in $PAIRS; do $BIN merge pair="$pair" recipe_version=v2; done
$BIN verify

#!/usr/bin/env bash
# Generate the tier-S tables round-robin: a few shards of every pair per round, so that at any moment
# every pair holds a uniform random sample of the space (shards are seeded permutations) and an
# interrupted run loses at most the shards in flight. Rerun to resume; finished shards are skipped.
#   scripts/generate_tier_s.sh [shards-per-round]     (env: PAIRS, EXECUTOR, DANAS_TABLES, PLAN, MERGE_ARGS, ARGS, MERGE)
# PLAN is the plan's generate overrides (default: the v1 tier-S plan, seed 0 + seeds 1, 2 on 10%, recipe v1);
# MERGE_ARGS what merge needs to find it (scripts/generate_v2.sh: recipe_version=v2). ARGS adds
# generate overrides, e.g. scripts/generate_tier_m.sh passes a 500-architecture sample; ARGS_<dataset>
# (dashes as underscores) adds overrides for one dataset's pairs, e.g. ARGS_mnist1d="executor.workers=1".
set -euo pipefail
set -f  # the overrides below expand unquoted: no globbing of their [..] lists
cd "$(dirname "$0")/.."
PER_ROUND=${1:-2}
PAIRS=${PAIRS:-"digits/none digits/resnet digits/mlp mnist1d/none mnist1d/resnet mnist1d/mlp"}
EXECUTOR=${EXECUTOR:-local}
BIN=${BIN:-.venv/bin/danas-bench}
ARGS=${ARGS:-}
PLAN=${PLAN:-"recipe_version=v1 noise_seeds=[1,2]"}  # v1 by name: the default recipe moves to v2 when promoted
MERGE_ARGS=${MERGE_ARGS:-"recipe_version=v1"}
while :; do
  left=0
  for pair in $PAIRS; do
    ds_args="ARGS_$(tr - _ <<<"${pair%%/*}")"
    out=$($BIN generate pair="$pair" executor="$EXECUTOR" $PLAN max_shards="$PER_ROUND" merge=false $ARGS ${!ds_args:-} 2>&1 | tee /dev/stderr)
    # "N to run" counts what was pending before this call
    pending=$(sed -n 's/.* \([0-9]*\) to run.*/\1/p' <<<"$out" | head -1)
    left=$((left + ${pending:-0}))
  done
  [ "$left" -eq 0 ] && break
done
[ "${MERGE:-1}" = 0 ] && exit 0  # MERGE=0: a phase of a longer run (scripts/generate_v2.sh), merged later
for pair in $PAIRS; do $BIN merge pair="$pair" $MERGE_ARGS; done
$BIN verify

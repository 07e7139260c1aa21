#!/usr/bin/env bash
# Generate tables v2 (the recipes chosen by the recipe search, conf/recipe/<dataset>-v2.yaml), round-robin:
# a few shards of every pair per round. Each pair's plan alternates seeds 0 and 1 per slice of
# architectures (paired_seeds=2), so that every pair gains its second seed early and any set of finished
# shards holds both seeds on a uniform sample; seed 2 follows once seeds 0 and 1 cover the space of every
# pair (a first phase runs only seeds 0 and 1, `only_seeds=[0,1]`).
# Rerun to resume: finished shards are skipped; a killed run loses at most the shards in flight.
#   scripts/generate_v2.sh [shards-per-round]     (env: PAIRS, EXECUTOR, DANAS_TABLES, BIN, ARGS)
# ARGS adds generate overrides, e.g. ARGS="executor.workers=1" to leave a core to other work.
set -euo pipefail
export PAIRS=${PAIRS:-"digits/none digits/resnet digits/vgg mnist1d/none mnist1d/resnet_ens mnist1d/tcn"}
export PLAN="recipe_version=v2 seeds=[0,1,2] paired_seeds=2" MERGE_ARGS="recipe_version=v2"
# tier M (PAIRS="fashion-mnist/none fashion-mnist/resnet fashion-mnist/mlp", once the pilot has written
# conf/recipe/fashion-mnist-v2.yaml): v1's seeded 500-architecture sample, every seed on all of it
export ARGS_fashion_mnist=${ARGS_fashion_mnist:-"archs=500 shard_size=64"}
# seeds 0 and 1 of every pair first (a pair with them done has nothing to run), then seed 2 of every pair
ARGS="${ARGS:-} only_seeds=[0,1]" MERGE=0 "$(dirname "$0")/generate_tier_s.sh" "${1:-1}"
exec "$(dirname "$0")/generate_tier_s.sh" "${1:-1}"

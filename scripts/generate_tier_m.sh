#!/usr/bin/env bash
# Tier-M v1 (superseded by v2: scripts/tier_m_v2.sh): fashion-mnist on a seeded sample of 500 canonical
# architectures (seed 0, seeds 1 and 2 on 10% of them), all three pairs round-robin, resumable like the
# tier-S script. Needs the teachers (`danas-bench teachers dataset=fashion-mnist`) and, to skip FLOP
# counting in every shard, the sample's architecture facts
# (`danas-bench archs dataset=fashion-mnist recipe_version=v1 archs=500`).
#   scripts/generate_tier_m.sh [shards-per-round]
set -euo pipefail
cd "$(dirname "$0")/.."
export PAIRS=${PAIRS:-"fashion-mnist/none fashion-mnist/resnet fashion-mnist/mlp"}
export ARGS=${ARGS:-"archs=500 shard_size=64 chunk=32"}
exec scripts/generate_tier_s.sh "${1:-2}"

#!/usr/bin/env bash
# Tier-M tables v2 from end to end, resumable at every step, so that a session only restarts it:
# 1. fashion-mnist's recipe search (`danas-bench pilot 'datasets=[fashion-mnist]'`, conf/pilot.yaml), which
#    writes conf/recipe/fashion-mnist-v2.yaml once the choice is final (the rule of docs/pilot.md);
# 2. the sample's architecture facts for that recipe (params, FLOPs, latency; once, before the cores are busy);
# 3. its v2 tables: seeds 0 and 1 of the 500-architecture sample for the three pairs, then seed 2
#    (scripts/generate_v2.sh; finished shards are skipped), merged and verified.
# Stops after step 1 when the search is incomplete (killed) or chose nothing. Once the choice is final
# (conf/recipe/fashion-mnist-v2.yaml exists) the search's remaining runs, those of candidates already over
# the cap, wait until the tables are done (step 4), so that they never hold the cores the tables need.
#   scripts/tier_m_v2.sh [shards-per-round, default 2: one 64-cell shard per core of this 2-core machine]
#   (env: BIN, PYTHON, OUT_DIR: where docs/ lives)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin/danas-bench}
OUT_DIR=${OUT_DIR:-docs}
search() { $BIN pilot 'datasets=[fashion-mnist]' write_recipes=true recipe_version=v2 out_dir="$OUT_DIR"; }
[ -f danas_bench/conf/recipe/fashion-mnist-v2.yaml ] || search
if [ ! -f danas_bench/conf/recipe/fashion-mnist-v2.yaml ]; then
  echo "fashion-mnist: no v2 recipe yet (the search is incomplete or chose nothing); rerun to resume" >&2
  exit 1
fi
facts=$(${PYTHON:-.venv/bin/python} -c "from danas_bench.core.recipe import recipe_for
from danas_bench.tables.archinfo import archs_path
print(archs_path(recipe_for('fashion-mnist', 'v2')))")
[ -f "$facts" ] || $BIN archs dataset=fashion-mnist recipe_version=v2 archs=500
PAIRS="fashion-mnist/none fashion-mnist/resnet fashion-mnist/mlp" scripts/generate_v2.sh "${1:-2}"
search  # 4. the over-cap candidates' remaining runs, for the frontier in docs/pilot.md

#!/usr/bin/env bash
# Tier L on one GPU machine: the measurements the GPU-hour estimates wait for (docs/cluster.md, "Tier L").
#
#   bash scripts/tier_l_gpu.sh            # results under $OUT (default ./tier_l_gpu_results)
#
# 1. the tier-L tests, the CUDA ones included (tests/test_tier_l.py);
# 2. the throughput benchmark on the GPU: fused engine vs the plain loop, float32 and bf16, on a short run of the
#    cifar10 recipe (--epochs/--n-train shorten it; per-architecture cost scales linearly in both);
# 3. a tiny real generation on the GPU: `danas-bench generate` with the debug executor on device=cuda, merged
#    and verified, in a throw-away tables folder.
# Data: the real binary archive under $DANAS_DATA when it is there (cifar-10-batches-bin/...), else a FAKE archive
# of random images in the exact binary layout (the timings hold, the accuracies mean nothing; the results say which).
# Needs the CUDA build of torch in .venv (docs/cluster.md). Nothing here downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-$PWD/tier_l_gpu_results}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export DANAS_TABLES="$WORK/tables" DANAS_CACHE="$WORK/cache" OMP_NUM_THREADS=1
N=${N:-64}                 # architectures in the throughput sample
EPOCHS=${EPOCHS:-1}        # epochs of the throughput run (the recipe's 20 would take hours)
NTRAIN=${NTRAIN:-5000}     # training images of the throughput run

{
  echo "date: $(date -Is)"; echo "host: $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} | tee "$OUT/machine.txt"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch: install the CUDA build (docs/cluster.md)')"

if [ -f "${DANAS_DATA:-/nonexistent}/cifar-10-batches-bin/test_batch.bin" ]; then
  echo "data: the real archive under $DANAS_DATA" | tee "$OUT/data.txt"
else
  export DANAS_DATA="$WORK/data"
  "$PY" - <<'EOF'
import os
import numpy as np
from danas_bench.training import data
rng = np.random.default_rng(0)
n = data.CIFAR_RECORDS  # full size, so the splits have the real sizes (and costs)
data.write_cifar_binary(os.environ["DANAS_DATA"], "cifar10", rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                        rng.integers(0, 10, n, dtype=np.uint8), 10000)
EOF
  echo "data: FAKE random images in the binary layout (timings only; accuracies are meaningless)" | tee "$OUT/data.txt"
fi

echo "== 1. tests" | tee "$OUT/log.txt"
"$PY" -m pytest -q -p no:cacheprovider tests/test_tier_l.py 2>&1 | tee "$OUT/tests.txt" | tail -3

echo "== 2. throughput on cuda (n=$N, epochs=$EPOCHS, n_train=$NTRAIN)" | tee -a "$OUT/log.txt"
for ac in fp32 bf16; do
  "$PY" - "$ac" "$N" "$EPOCHS" "$NTRAIN" "$OUT" <<'EOF' 2>&1 | tee -a "$OUT/log.txt"
import json, sys
from pathlib import Path
from danas_bench.training import data
from danas_bench.reports import throughput
from danas_bench.core.recipe import recipe_for
ac, n_archs, epochs, n_train, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
full = recipe_for("cifar10")
n = data.CIFAR_RECORDS
full_train = min(full.n_train or n, n - n // 12 - n // 6)  # the full recipe's training images
r = full.replace(epochs=epochs, n_train=n_train, warmup_epochs=None, autocast="bf16" if ac == "bf16" else None)
for chunk in (16, 64):
    res = throughput.bench_recipe(r, "none", n_archs, chunk, device="cuda")
    res["autocast"] = ac
    res["engine_tflops"] = res["train_gflop_per_arch"] * n_archs / res["engine_seconds"] / 1e3
    res["engine_gpu_seconds_per_arch_full_recipe"] = ((res["engine_seconds"] / n_archs) * (full.epochs / epochs)
                                                      * (full_train / n_train))
    print(json.dumps({k: res[k] for k in ("autocast", "chunk", "device_name", "engine_seconds", "plain_seconds",
                                          "speedup", "engine_tflops", "engine_gpu_seconds_per_arch_full_recipe",
                                          "equiv_mean_abs_diff", "seed_mean_abs_diff")}), flush=True)
    with open(out / "throughput_gpu.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
EOF
done

echo "== 3. a tiny real generation on cuda (debug executor, 2 shards of 8, 1 epoch on 2,000 images)" | tee -a "$OUT/log.txt"
mkdir -p "$DANAS_TABLES"
"$PY" -m danas_bench.cli generate pair=cifar10/none archs=16 shard_size=8 chunk=8 executor=debug \
    executor.device=cuda 'recipe={width: 16, epochs: 1, batch_size: 256, n_train: 2000, valid_curve_n: 1000}' \
    2>&1 | tail -30 | tee -a "$OUT/log.txt"
"$PY" -m danas_bench.cli verify 2>&1 | tee -a "$OUT/log.txt"
"$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$OUT/log.txt"
import json, sys
from pathlib import Path
import polars as pl
from danas_bench.core.paths import tables_dir
(f,) = sorted((tables_dir() / "cifar10").glob("none-*.parquet"))
df = pl.read_parquet(f)
print(f"{f.name}: {df.height} rows, mean test acc {df['test_acc'].mean():.3f}, "
      f"train seconds per arch {df['train_seconds'].mean():.2f} (GPU wall seconds)")
Path(sys.argv[1], "generation.json").write_text(json.dumps({"rows": df.height, "test_acc_mean": df["test_acc"].mean(),
                                                           "train_seconds_mean": df["train_seconds"].mean()}))
EOF
echo "done: results in $OUT"

"""The query path's speed, two versions of the package side by side.

    .venv/bin/python scripts/query_speed.py 89d0818 HEAD --rounds 5 --pair digits/resnet

Each version (a git ref, copied with ``git archive``; ``.`` is the working tree) runs in its own fresh
interpreter, ``--rounds`` times, the two alternating (old, new, new, old, ...) so that a background load
weighs on both alike. Both read the same tables (this checkout's ``tables/``, or ``$DANAS_TABLES``) with
an empty cache. Per round and operation the time per call is the best of 7 repeats of a timeit loop of
about 0.1 s; the table gives the median over the rounds and the ratio new/old. The values every
operation returns are compared between the versions: a speed-up must not change a result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, timeit
import numpy as np
import danas_bench as db

pair = sys.argv[1]
b = db.open(pair, fallback="error")
a = int(b.archs[len(b.archs) // 2])
many = np.random.default_rng(0).choice(np.asarray(b.archs), 1000, replace=False)
s0 = b.seeds[0]
ops = {
    "query(index, seed=0)": lambda: b.query(a, "valid_acc", seed=s0),
    "query(index), seed sampled": lambda: b.query(a, "valid_acc", seed=None, rng=rng),
    "query(index, seed='mean')": lambda: b.query(a, "valid_acc", seed="mean"),
    "query(index, epoch=1, seed=0)": lambda: b.query(a, "valid_acc", epoch=1, seed=s0),
    "query_many(1,000 indices, seed=0)": lambda: b.query_many(many, "valid_acc", seed=s0),
    "query_many(1,000 indices, seed='mean')": lambda: b.query_many(many, "valid_acc", seed="mean"),
    "test(index)": lambda: b.test(a),
    "test(index, seed=0)": lambda: b.test(a, "test_acc", seed=s0),
}
out = {"times": {}, "values": {}}
for name, fn in ops.items():
    rng = np.random.default_rng(0)
    out["values"][name] = np.atleast_1d(fn()).tolist()
    t = timeit.Timer(fn)
    n, _ = t.autorange()
    n = max(1, n // 2)  # autorange aims at 0.2 s
    out["times"][name] = min(t.repeat(repeat=7, number=n)) / n
print(json.dumps(out))
"""


def checkout(ref: str, into: Path) -> Path:
    """A copy of ``ref`` (``.``: this checkout itself) to put on PYTHONPATH."""
    if ref == ".":
        return ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "danas_bench"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(src: Path, pair: str, env: dict) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, pair],
        cwd=src,
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"{src}: {res.stderr}")
    return json.loads(res.stdout.splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", nargs="?", default="89d0818")
    ap.add_argument("new", nargs="?", default="HEAD")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pair", default="digits/resnet")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="query_speed_") as tmp:
        tmp = Path(tmp)
        src = {v: checkout(ref, tmp / v) for v, ref in (("old", args.old), ("new", args.new))}
        env = {
            **os.environ,
            "DANAS_TABLES": os.environ.get("DANAS_TABLES", str(ROOT / "tables")),
            "DANAS_CACHE": str(tmp / "cache"),
            "OMP_NUM_THREADS": "1",
        }
        times: dict[str, list[dict]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for v in ("old", "new") if r % 2 == 0 else ("new", "old"):
                got = measure(src[v], args.pair, env)
                times[v].append(got["times"])
                if r == 0 and v == "new":
                    values_new = got["values"]
                elif r == 0:
                    values_old = got["values"]
    differ = [k for k in values_old if values_old[k] != values_new[k]]
    print(
        f"{args.pair}: {args.old} (old) vs {args.new} (new), {args.rounds} interleaved rounds, median of each "
        f"round's best-of-7 time per call"
    )
    print()
    print("| operation | old | new | new/old |")
    print("|---|---:|---:|---:|")
    for op in times["old"][0]:
        o = float(np.median([t[op] for t in times["old"]]))
        n = float(np.median([t[op] for t in times["new"]]))
        print(f"| `{op}` | {o * 1e6:,.2f} us | {n * 1e6:,.2f} us | {n / o:.2f} |")
    print()
    print("results identical in both versions" if not differ else f"RESULTS DIFFER: {differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Two teachers of one dataset, paired on the same students: does the one with the higher test accuracy make
better students, on average and at the top? (``danas_bench.reports.teacher_pairs``; docs/teachers.md holds
this for every two teachers of a dataset.)

    .venv/bin/python scripts/compare_teachers.py mnist1d resnet_ens resnet
    .venv/bin/python scripts/compare_teachers.py digits vgg mlp --recipe v2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse

from danas_bench.core.recipe import recipe_id_of
from danas_bench.reports.teacher_pairs import compare


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("a", help="a teacher (or none)")
    ap.add_argument("b", help="another teacher to compare it with (or none)")
    ap.add_argument("--recipe", default="v2", help="a recipe version or id (default v2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds both tables hold")
    a = ap.parse_args(argv)
    if a.a == a.b:
        ap.error(f"compare two different teachers, got {a.a} twice")
    rid = recipe_id_of(a.dataset, a.recipe)
    try:
        r = compare(a.dataset, a.a, a.b, rid, a.seeds)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    print(f"{a.dataset}/{a.a} (A) vs {a.dataset}/{a.b} (B), recipe {rid}, seeds {a.seeds}: {r['cells']} non-zero cells")
    parts = [("all cells", r["all"])]
    if "top" in r:
        parts.append((f"top 1% by no-KD ({r['top']['cells']} cells)", r["top"]))
    for name, s in parts:
        lo, hi = s["ci"]
        ci = f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"
        print(f"  {name}: A - B {100 * s['mean']:+.2f} pp {ci}, A better on {s['a_better']:.0%}")
    print(f"  best seed mean: A {100 * r['best_seed_mean']['A']:.2f}%, B {100 * r['best_seed_mean']['B']:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

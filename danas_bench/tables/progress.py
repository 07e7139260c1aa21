"""Where each generation stands, read from its shard folder: the shards and rows done per seed, the
core-hours spent and left at the rate its own shards measured (a pair with none finished yet: at its
sibling pairs' rate, the pairs of the same recipe), and whether the merged table is behind
the shards (``danas-bench progress``). Reads the shards; runs and writes nothing."""

from __future__ import annotations

import math
from pathlib import Path

from danas_bench.core import schema as tb
from danas_bench.core.paths import shard_path, tables_dir
from danas_bench.core.recipe import RecipeMissing, recipe_id_of
from danas_bench.tables.generate import check_shard
from danas_bench.tables.manifest import load_manifest
from danas_bench.tables.plan import Plan


def one(d: Path, root: Path) -> dict:
    """The progress of the generation in shard folder ``d`` (``<root>/shards/<slug>/<recipe_id>/``)."""
    plan = Plan.from_json((d / "plan.json").read_text())
    per_seed: dict[int, dict] = {}
    core_s = 0.0
    bad = []
    for s in plan.shards:
        seed = per_seed.setdefault(int(s["seed"]), {"shards": 0, "done": 0, "rows": 0, "rows_done": 0})
        seed["shards"] += 1
        seed["rows"] += len(s["archs"])
        path = shard_path(d, s["id"])
        if not path.exists():
            continue
        try:
            table = check_shard(path, plan, s)
        except tb.TableError as exc:  # generate reruns it; say so rather than count it
            bad.append(str(exc))
            continue
        seed["done"] += 1
        seed["rows_done"] += table.num_rows
        core_s += float(sum(table.column("train_seconds").to_pylist()))
    rows = sum(v["rows"] for v in per_seed.values())
    rows_done = sum(v["rows_done"] for v in per_seed.values())
    merged = [
        e
        for e in load_manifest(root)["files"].values()
        if e.get("kind") == "table" and e.get("pair") == plan.pair and e.get("recipe_id") == plan.recipe_id
    ]
    per_row = core_s / rows_done if rows_done else math.nan
    return {
        "pair": plan.pair,
        "recipe_id": plan.recipe_id,
        "shards": len(plan.shards),
        "done": sum(v["done"] for v in per_seed.values()),
        "seeds": dict(sorted(per_seed.items())),
        "rows": rows,
        "rows_done": int(rows_done),
        "core_hours_spent": core_s / 3600,
        "core_hours_left": per_row * (rows - rows_done) / 3600 if rows_done else math.nan,
        "rate_from": [],  # the sibling pairs whose rate estimates core_hours_left (see borrow_rates)
        "merged_rows": merged[0]["rows"] if merged else 0,
        "merged_partial": bool(merged and merged[0].get("partial")),
        "bad": bad,
    }


def _wanted(d: Path, recipe: str | None) -> bool:
    """Is shard folder ``d`` (``<slug>/<recipe_id>``) of ``recipe`` (a 16-hex id, or a version name such as v2)?"""
    if recipe is None:
        return True
    try:
        return recipe_id_of(d.parent.name.split("__")[0], recipe) == d.name
    except RecipeMissing:  # this dataset has no such version
        return False


def collect(root: Path | None = None, recipe: str | None = None) -> list[dict]:
    """``one`` for every shard folder with a plan under ``root`` (of ``recipe`` only, when given: an id
    or a version name)."""
    root = Path(root) if root else tables_dir()
    folders = [d for d in sorted((root / "shards").glob("*/*")) if (d / "plan.json").is_file() and _wanted(d, recipe)]
    return borrow_rates([one(d, root) for d in folders])


def borrow_rates(rows: list[dict]) -> list[dict]:
    """Give a generation with no finished shard the core-seconds per row of its siblings (the pairs of
    the same recipe: the same students and epochs, only the teacher differs), so that the time left of a
    round-robin generation is known from its first round. Marked in ``rate_from``; rows with shards of
    their own keep their own rate."""
    for r in rows:
        if r["rows_done"]:
            continue
        sib = [o for o in rows if o["recipe_id"] == r["recipe_id"] and o["rows_done"]]
        if sib:
            per_row = sum(o["core_hours_spent"] for o in sib) / sum(o["rows_done"] for o in sib)
            r["core_hours_left"] = per_row * r["rows"]
            r["rate_from"] = [o["pair"] for o in sib]
    return rows


def render(rows: list[dict], workers: int) -> list[str]:
    """A Markdown table, then the total left; wall hours at ``workers`` parallel tasks, from the core-hours
    left (``*``: estimated at the sibling pairs' rate; a shard's start-up, outside its rows' seconds, is not
    counted)."""
    out = [
        "| pair | recipe | shards done | per seed (done / shards) | core-h spent | core-h left | "
        f"wall h left at {workers} workers | merged table |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = ", ".join(f"{s}: {v['done']}/{v['shards']}" for s, v in r["seeds"].items())
        left = r["core_hours_left"]
        mark = "*" if r["rate_from"] else ""
        if r["merged_rows"] == 0:
            merged = "not merged"
        elif r["merged_rows"] == r["rows_done"]:
            merged = f"{r['merged_rows']} rows, current" + (" (partial)" if r["merged_partial"] else "")
        elif r["merged_rows"] < r["rows_done"]:
            merged = f"{r['merged_rows']} rows, behind the shards: merge again"
        else:  # shards removed or damaged since the merge: merging now would shrink the table
            merged = f"{r['merged_rows']} rows, ahead of the shards (missing or damaged: rerun generate)"
        out.append(
            f"| {r['pair']} | `{r['recipe_id']}` | {r['done']}/{r['shards']} | {seeds} | {r['core_hours_spent']:.1f} | "
            f"{'-' if math.isnan(left) else f'{left:.1f}{mark}'} | "
            f"{'-' if math.isnan(left) else f'{left / workers:.1f}{mark}'} | "
            f"{merged} |"
        )
    for r in rows:
        out += [f"- {r['pair']}: {b}" for b in r["bad"]]
    known = [r["core_hours_left"] for r in rows if not math.isnan(r["core_hours_left"])]
    total = f"Left in all: {sum(known):.1f} core-h, {sum(known) / workers:.1f} wall h at {workers} workers"
    if unknown := [r["pair"] for r in rows if math.isnan(r["core_hours_left"])]:
        total += f" (not counted, no rate yet: {', '.join(unknown)})"
    if borrowed := [f"{r['pair']} at {', '.join(r['rate_from'])}'s" for r in rows if r["rate_from"]]:
        total += "; * no finished shard yet, estimated at the rate of a pair of the same recipe"
        total += f" ({'; '.join(borrowed)})"
    return [*out, "", total + "."]

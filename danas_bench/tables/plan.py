"""A generation plan: which (architecture, seed) rows one pair's table holds and how they are cut into
shards. Written once as ``plan.json`` beside the shards; every restart must agree with it, and
``verify`` checks a merged table's coverage against it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.pairs import split_pair
from danas_bench.core.recipe import KD, Recipe


@dataclass
class Plan:
    pair: str
    recipe: dict
    recipe_id: str
    kd: dict
    shards: list[dict]  # {"id": int, "seed": int, "archs": [int, ...]}
    sampled: bool  # True when the table covers a sample of the canonical architectures

    def rows(self) -> set[tuple[int, int]]:
        return {(a, s["seed"]) for s in self.shards for a in s["archs"]}

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=0)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))


def arch_set(archs: int | str = "all", arch_sample_seed: int = 0) -> tuple[np.ndarray, bool]:
    """The architectures of a plan and whether they are a sample: ``"all"`` canonical ones in a seeded
    order, or a seeded sample of ``archs`` of them (tier M). ``danas-bench archs`` uses the same set."""
    canon = np.asarray(space.canonical_indices())
    rng = np.random.default_rng(arch_sample_seed)
    if archs == "all":
        # shards take a seeded permutation of the space, so that any set of finished shards is a uniform
        # random sample of it: a partial table (`merge partial=true`) is unbiased
        return rng.permutation(canon), False
    try:
        n = int(archs)
    except (TypeError, ValueError):
        n = 0
    if not 0 < n <= len(canon):
        raise ValueError(f"archs must be 'all' or an int in [1, {len(canon)}], got {archs!r}")
    # a sample in seeded random order too: the first shards of a sampled plan are a sample of it
    return rng.choice(canon, n, replace=False), n < len(canon)


def make_plan(
    pair: str,
    recipe: Recipe,
    kd: KD,
    seeds=(0,),
    archs: int | str = "all",
    arch_sample_seed: int = 0,
    noise_seeds=(),
    noise_fraction: float = 0.1,
    shard_size: int = 64,
    paired_seeds: int = 1,
) -> Plan:
    """Rows: ``seeds`` over the architecture set, ``noise_seeds`` over a seeded fraction of it.

    Shards run in plan order. The first ``paired_seeds`` seeds alternate per slice of architectures
    (slice 1 seed 0, slice 1 seed 1, slice 2 seed 0, ...), so that any prefix of finished shards holds
    those seeds on the same uniform sample: what held-out scoring needs from a partial table. The
    remaining seeds follow one after the other, as in tables v1 (``paired_seeds=1``)."""
    dataset, teacher = split_pair(pair)  # ValueError listing the valid pairs
    if recipe.dataset != dataset:
        raise ValueError(f"pair {pair} is on dataset {dataset!r} but the recipe is for {recipe.dataset!r}")
    if kd.teacher != teacher:
        raise ValueError(f"pair {pair} has teacher {teacher!r} but the KD setting names {kd.teacher!r}")
    seeds, noise_seeds = _seed_list("seeds", seeds), _seed_list("noise_seeds", noise_seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {seeds}")
    if len(set(noise_seeds)) != len(noise_seeds) or set(noise_seeds) & set(seeds):
        raise ValueError(
            f"noise_seeds {noise_seeds} must not repeat and must not overlap seeds {seeds} "
            f"(a row is one architecture and one seed)"
        )
    if noise_seeds and not (_is_number(noise_fraction) and 0 < noise_fraction <= 1):
        raise ValueError(f"noise_fraction must be a number in (0, 1], got {noise_fraction!r}")
    if not _is_int(shard_size) or shard_size < 1:
        raise ValueError(f"shard_size must be >= 1 (an int), got {shard_size!r}")
    shard_size = int(shard_size)
    base, sampled = arch_set(archs, arch_sample_seed)
    noise = (
        np.sort(
            np.random.default_rng(arch_sample_seed + 1).choice(
                base, max(1, int(round(noise_fraction * len(base)))), replace=False
            )
        )
        if noise_seeds
        else np.array([], int)
    )
    paired_seeds = int(paired_seeds)
    if not 1 <= paired_seeds <= len(seeds):
        raise ValueError(f"paired_seeds must lie in [1, {len(seeds)}] (the number of seeds), got {paired_seeds}")
    shards, sid = [], 0
    if paired_seeds > 1:
        for i in range(0, len(base), shard_size):
            for seed in seeds[:paired_seeds]:
                shards.append({"id": sid, "seed": int(seed), "archs": sorted(int(a) for a in base[i : i + shard_size])})
                sid += 1
        seeds = seeds[paired_seeds:]
    for seed_list, pool in ((seeds, base), (noise_seeds, noise)):
        for seed in seed_list:
            for i in range(0, len(pool), shard_size):
                shards.append({"id": sid, "seed": int(seed), "archs": sorted(int(a) for a in pool[i : i + shard_size])})
                sid += 1
    return Plan(pair, recipe.to_dict(), recipe.recipe_id, kd.__dict__.copy(), shards, sampled)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and bool(np.isfinite(v))
    )


def _seed_list(name: str, seeds) -> list[int]:
    """Seeds as ints in the table's int16 range, refused before anything trains (a seed the table
    cannot store would otherwise train first and fail at the write, on every retry)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"{name} must be a list of ints in [0, {tb.SEED_MAX}], got {seeds!r}")
    out = []
    for s in seeds:
        if not _is_int(s) or not 0 <= s <= tb.SEED_MAX:
            raise ValueError(f"{name} must be ints in [0, {tb.SEED_MAX}] (the table stores int16), got {s!r}")
        out.append(int(s))
    return out


def _describe(plan: Plan) -> str:
    """A plan in the terms of generate's options, for error messages."""
    per_seed: dict[int, int] = {}
    for sh in plan.shards:
        per_seed[sh["seed"]] = per_seed.get(sh["seed"], 0) + len(sh["archs"])
    size = max((len(sh["archs"]) for sh in plan.shards), default=0)
    seeds = ", ".join(f"seed {k}: {v} archs" for k, v in sorted(per_seed.items()))
    kd = ", ".join(f"{k}={v}" for k, v in plan.kd.items())
    return f"{len(plan.shards)} shards of <= {size} ({seeds}; {kd})"


def plan_conflict(plan: Plan, d: Path) -> str | None:
    """Why folder ``d`` cannot take ``plan`` (its plan.json holds another one), or None."""
    p = d / "plan.json"
    if not p.exists():
        return None
    old = Plan.from_json(p.read_text())
    if (old.recipe_id, old.kd, old.shards) == (plan.recipe_id, plan.kd, plan.shards):
        return None
    return (
        f"{p} holds a different plan: it has {_describe(old)}, this call asks for {_describe(plan)}; "
        f"finish it with the same settings (e.g. pass its seeds / noise_seeds / shard_size) or remove {d} "
        "to start over"
    )


def save_plan(plan: Plan, d: Path) -> Plan:
    """Write plan.json, or check that an existing one is the same plan (so resumes cannot drift)."""
    d.mkdir(parents=True, exist_ok=True)
    p = d / "plan.json"
    if p.exists():
        conflict = plan_conflict(plan, d)
        if conflict:
            raise ValueError(conflict)
        return Plan.from_json(p.read_text())
    tmp = d / f".plan.json.tmp-{os.getpid()}"
    tmp.write_text(plan.to_json())
    os.replace(tmp, p)
    return plan


def check_coverage(table: pa.Table, expected: set[tuple[int, int]], name: str) -> None:
    keys = list(zip(table.column("arch_index").to_pylist(), table.column("seed").to_pylist()))
    seen = set(keys)
    if len(seen) != len(keys):
        dup = next(k for k in seen if keys.count(k) > 1)
        raise tb.TableError(f"{name}: duplicate rows, e.g. architecture {dup[0]} seed {dup[1]}")
    if seen != expected:
        miss, extra = expected - seen, seen - expected
        raise tb.TableError(
            f"{name}: coverage mismatch: {len(miss)} planned rows missing"
            + (f" (e.g. arch {min(miss)[0]} seed {min(miss)[1]})" if miss else "")
            + f", {len(extra)} unplanned rows"
        )

"""The bodies of the ``danas-bench`` commands; each takes its composed Hydra config."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from danas_bench.core.pairs import TEACHERS
from danas_bench.core.paths import shard_dir, shard_path
from danas_bench.core.recipe import RECIPE_DIR, recipe_for, recipe_key  # noqa: F401  (re-exported)
from danas_bench.tables import manifest
from danas_bench.tables.plan import Plan, make_plan, plan_conflict, save_plan


def teachers(cfg) -> int:
    from danas_bench.training import teachers as t

    fams = cfg.families or TEACHERS[cfg.dataset]
    rec = t.TeacherRecipe(cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.seed)
    for fam in fams:
        info = t.train(cfg.dataset, fam, rec, device=cfg.get("device", "cpu"))
        print(
            f"{cfg.dataset}/{fam}: test acc {info['accuracy']['test']:.4f}, params {info['params']:,}, "
            f"{info['train_seconds']:.0f}s"
        )
    manifest.register_teachers(cfg.dataset)  # weights and logits in the MANIFEST: `verify` checks them
    from danas_bench.reports import reliability
    from danas_bench.reports import teachers as doc

    try:  # the teachers are saved already: a table that cannot be read costs only the margins section
        figures = reliability.shipped_figures()
    except (OSError, ValueError) as exc:  # TableError is a ValueError
        print(f"docs/teachers.md without margins ({exc}); `danas-bench datasheet` writes them")
        figures = None
    doc.report(Path("docs/teachers.md"), figures)
    return 0


def pilot(cfg) -> int:
    from danas_bench.core.recipe import Recipe
    from danas_bench.reports import pilot as p
    from danas_bench.reports.pilot_report import write_report

    crit = p.Criteria(**cfg.criteria)
    out = Path(cfg.out_dir)
    for ds in cfg.datasets:  # every per-dataset setting before anything trains
        _per_dataset(cfg.generation_cells, ds)
        _per_dataset(cfg.budget_core_seconds, ds, float)
    cells = {ds: p.sample_cells(_per_dataset(cfg.n_cells, ds), cfg.sample_seed) for ds in cfg.datasets}
    recipes = {ds: [Recipe(dataset=ds, **c) for c in OmegaConf.to_container(cfg.candidates[ds])] for ds in cfg.datasets}
    if cfg.train:
        for ds in cfg.datasets:
            p.run_candidates(recipes[ds], cells[ds], tuple(cfg.seeds), cfg.chunk, cfg.workers, out)
    # the datasets of this call replace their entries; the others' stay (a tier-M search adds to tier S's)
    path = out / "pilot.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for ds in cfg.datasets:
        frames = [(r, df) for r in recipes[ds] if (df := p._read_runs(p.runs_path(out, r))) is not None]
        measured = [m for r, df in frames if (m := p.measure(df, r, cells[ds], crit)) is not None]
        budget = _per_dataset(cfg.budget_core_seconds, ds, float)
        pick = p.choose(measured, budget, crit) if measured else {"chosen": None}
        second = p.runner_up(measured, pick["chosen"], budget, crit) if pick.get("chosen") else None
        if second is not None:
            by_id = {r.recipe_id: (r, df) for r, df in frames}
            pick["versus_runner_up"] = p.min_icc_difference(
                by_id[pick["chosen"]], by_id[second["recipe_id"]], cells[ds]
            )
        pending = p.over_budget_pending(frames, measured, budget, crit)
        final = p.decided(len(recipes[ds]), measured, pending)
        results[ds] = {
            "candidates": measured,
            "pending_over_budget": pending,
            "final": final,
            "cells": [int(c) for c in cells[ds]],
            "n_planned": len(recipes[ds]),
            "budget_core_seconds": budget,
            "generation_cells": _per_dataset(cfg.generation_cells, ds),
            "criteria": crit.__dict__,
            "longer": p.longer_training(frames, cells[ds]),
            **pick,
        }
        if cfg.write_recipes and pick.get("chosen") and final:
            _write_recipe(ds, str(cfg.get("recipe_version", "v2")), pick["recipe"])
        print(f"{ds}: {len(measured)}/{len(recipes[ds])} candidates measured; chosen {pick.get('chosen')}")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    write_report(results, out)
    return 0


def _plain(value):
    """A config value as plain Python (a ListConfig as a list; scalars and None as they are)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _per_dataset(value, dataset: str, kind=int):
    """A pilot setting given once (a number) or per dataset (a mapping)."""
    if isinstance(value, (int, float)):
        return kind(value)
    if dataset not in value:
        raise ValueError(f"conf/pilot.yaml gives no value for {dataset!r} (has {', '.join(value)}); add one")
    return kind(value[dataset])


def _write_recipe(dataset: str, version: str, fields: dict) -> None:
    """conf/recipe/<dataset>-<version>.yaml from the pilot's choice; a different recipe already there is
    kept (tables may carry its id) and the user is told how to write a new version."""
    from danas_bench.core.recipe import Recipe

    path = RECIPE_DIR / f"{dataset}-{version}.yaml"
    new = Recipe.from_dict({**fields, "dataset": dataset})
    if path.exists():
        old = recipe_for(dataset, version)
        if old.recipe_id != new.recipe_id:
            print(
                f"{dataset}: kept {path.name} (recipe {old.recipe_id}; the pilot chose {new.recipe_id}): pass "
                f"recipe_version=<a new name> to write the choice as another version"
            )
            return
    RECIPE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text("# chosen by `danas-bench pilot` (docs/pilot.md)\n" + OmegaConf.to_yaml(fields))


def summary(cfg) -> int:
    path = Path("docs/pilot.json")
    if not path.exists():
        print("no pilot results yet: run `danas-bench pilot`")
        return 1
    from danas_bench.reports.pilot_report import summary_lines

    print("\n".join(summary_lines(json.loads(path.read_text()))))
    return 0


def _recipe_choice(cfg):
    """A dict of recipe fields (``recipe=...``), else a version (``recipe_version=v2``; Hydra reads a bare
    ``recipe=v2`` as a choice of the conf/recipe group), else None for the dataset's default recipe."""
    if cfg.get("recipe") is not None and cfg.get("recipe_version"):
        raise ValueError("pass either recipe={...} (fields) or recipe_version=v2, not both")
    return cfg.recipe if cfg.get("recipe") is not None else cfg.get("recipe_version")


def _root(cfg):
    return Path(cfg.root) if cfg.get("root") else None


def generate(cfg) -> int:
    from danas_bench.core.pairs import split_pair
    from danas_bench.core.recipe import KD
    from danas_bench.tables import generate as g

    dataset, teacher = split_pair(cfg.pair)
    recipe = recipe_for(dataset, _recipe_choice(cfg))
    kd = KD(teacher, cfg.kd.temperature, cfg.kd.alpha)
    plan = make_plan(
        cfg.pair,
        recipe,
        kd,
        list(cfg.seeds),
        cfg.archs,
        cfg.arch_sample_seed,
        list(cfg.noise_seeds),
        cfg.noise_fraction,
        cfg.shard_size,
        cfg.get("paired_seeds", 1),
    )
    d = shard_dir(cfg.pair, recipe.recipe_id, _root(cfg))
    chunk = g.auto_chunk(recipe) if cfg.chunk == "auto" else int(cfg.chunk)
    if cfg.get("dry_run"):  # the plan, the sbatch script, where data and teachers go: no SLURM, data or teachers needed
        from danas_bench.tables.cluster import dry_run

        conflict = plan_conflict(plan, d)  # the real run would stop on it: say so, count nothing done
        done = sum(g.shard_done(shard_path(d, s["id"]), plan, s) for s in plan.shards) if not conflict else 0
        rc = dry_run(plan, d, recipe, OmegaConf.to_container(cfg.executor), chunk, _recipe_choice(cfg), done=done)
        if conflict:
            print(f"\nWARNING: a real run would stop here: {conflict}")
        return 1 if conflict else rc
    plan = save_plan(plan, d)
    ex = cfg.executor
    g.run_pending(
        plan,
        d,
        ex.name,
        ex.get("workers"),
        chunk,
        OmegaConf.to_container(ex) if ex.name == "slurm" else None,
        max_shards=cfg.get("max_shards"),
        device=ex.get("device", "cpu"),
        only_seeds=_plain(cfg.get("only_seeds")),
    )
    left = sum(not shard_path(d, s["id"]).exists() for s in plan.shards)
    if cfg.merge and (left == 0 or cfg.get("partial", False)):
        g.merge(plan, d, _root(cfg), partial=bool(cfg.get("partial", False)))
    elif cfg.merge:
        print(f"{left} of {len(plan.shards)} shards still to run: not merged (rerun to finish, or add partial=true)")
    return 0


def merge(cfg) -> int:
    from danas_bench.core.pairs import split_pair
    from danas_bench.tables import generate as g

    dataset, _ = split_pair(cfg.pair)
    recipe = recipe_for(dataset, _recipe_choice(cfg))
    d = shard_dir(cfg.pair, recipe.recipe_id, _root(cfg))
    if not (d / "plan.json").exists():
        raise SystemExit(
            f"nothing to merge: {d / 'plan.json'} does not exist; run `danas-bench generate pair={cfg.pair}`"
        )
    g.merge(Plan.from_json((d / "plan.json").read_text()), d, _root(cfg), partial=bool(cfg.get("partial", False)))
    return 0


def verify(cfg) -> int:

    for dataset in cfg.get("register_teachers") or []:  # vouch for teacher files trained here
        for f in manifest.register_teachers(dataset, _root(cfg)):
            print(f"listed {f} in the MANIFEST")
    return 1 if manifest.verify(_root(cfg)) else 0


def archs(cfg) -> int:
    from danas_bench.tables import archinfo

    indices = None
    if cfg.archs != "all":
        from danas_bench.tables.plan import arch_set

        indices = sorted(int(a) for a in arch_set(cfg.archs, cfg.arch_sample_seed)[0])
    archinfo.build_file(recipe_for(cfg.dataset, _recipe_choice(cfg)), _root(cfg), indices)
    return 0


def query(cfg) -> int:
    """``danas-bench query "<arch>" pair=...``: print the record (or one metric) as JSON."""
    from danas_bench.core.budget import BudgetExhausted

    try:
        return _query(cfg)
    except (ValueError, LookupError, BudgetExhausted) as exc:  # TableError is a ValueError
        raise SystemExit(f"danas-bench query: {exc}") from None


def _query(cfg) -> int:
    from danas_bench.core import space
    from danas_bench.query.bench import MissingRecord
    from danas_bench.query.bench import open as open_bench
    from danas_bench.query.metrics import TEST

    arch = cfg.arch
    if arch is None:
        raise SystemExit(
            'usage: danas-bench query "<arch string | index | [op, ...]>" pair=dataset/teacher '
            "[seed=0] [metric=valid_acc] [epoch=N] [kd.temperature=T kd.alpha=A] [fallback=error]"
        )
    if OmegaConf.is_config(arch):
        arch = OmegaConf.to_container(arch)
    if not isinstance(arch, (str, int, list)) or isinstance(arch, bool):
        space.to_index(arch)  # ValueError saying what an architecture looks like
    bench = open_bench(
        cfg.pair,
        cfg.get("root") or None,
        cfg.fallback,
        cfg.get("overlay_dir") or None,
        allow_unlisted=bool(cfg.get("allow_unlisted", False)),
        recipe_id=recipe_key(cfg.get("recipe_id")),
    )
    kd = {"kd_temperature": cfg.kd.temperature, "kd_alpha": cfg.kd.alpha}
    index = space.to_index(arch)
    head = {
        "pair": bench.pair,
        "recipe_id": bench.recipe_id,
        "asked": space.arch_str(index),
        "index": index,
        "canonical": space.canonical(index),
    }
    if cfg.get("metric"):
        m = cfg.metric
        v = (
            bench.test(arch, m, seed=cfg.seed, **kd)
            if m in TEST
            else bench.query(arch, m, epoch=cfg.get("epoch"), seed=cfg.seed, **kd)
        )
        print(_json({**head, "metric": m, "epoch": cfg.get("epoch"), "seed": cfg.seed, "value": v}))
        return 0
    out = {**head, **bench.record(arch, seed=cfg.seed, **kd)}
    if cfg.get("info", True):
        try:
            out["info"] = bench.info(arch)
        except MissingRecord as exc:
            out["info"] = str(exc)
    print(_json(out))
    return 0


def _json(obj) -> str:
    """Valid JSON (RFC 8259): a nan or inf (a metric a pair does not record) is written as null."""
    import math

    import numpy as np

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (float, np.floating)):
            return float(x) if math.isfinite(x) else None
        if isinstance(x, np.integer):
            return int(x)
        return x

    return json.dumps(clean(obj), indent=1, allow_nan=False)


def progress(cfg) -> int:
    import os

    from danas_bench.tables import progress as pg

    recipe = recipe_key(cfg.get("recipe_id"))
    rows = pg.collect(_root(cfg), recipe)
    if not rows:
        every = pg.collect(_root(cfg)) if recipe is not None else []
        raise SystemExit(
            f"danas-bench progress: no generation of recipe {recipe!r} under tables/shards/ (recipes there: "
            f"{sorted({r['recipe_id'] for r in every})}; a version name such as v2 or a 16-hex id)"
            if every
            else "danas-bench progress: no generation under tables/shards/ (start one with `danas-bench generate`)"
        )
    print("\n".join(pg.render(rows, int(cfg.workers or os.cpu_count() or 1))))
    return 0


def promote(cfg) -> int:
    from danas_bench.tables import promote as pr

    if not cfg.dataset:
        raise ValueError("name the dataset: danas-bench promote dataset=<digits|mnist1d|fashion-mnist> version=v2")
    version = str(cfg.version)
    if cfg.dry_run:
        todo = pr.problems(cfg.dataset, version, _root(cfg))
        print("\n".join(f"- {t}" for t in todo) or f"{cfg.dataset}: {version} is complete and can be promoted")
        return 1 if todo else 0
    path = pr.promote(cfg.dataset, version, _root(cfg))
    print(
        f"{path}: {cfg.dataset} now serves {version} ({recipe_for(cfg.dataset).recipe_id}); regenerate the docs "
        "that read the default (`danas-bench datasheet`, `make leaderboard-docs`) and commit the alias with them"
    )
    return 0


def datasheet(cfg) -> int:
    from danas_bench.reports import datasheet as ds

    res = ds.write(_root(cfg), Path(cfg.out_dir))
    print(f"docs/datasheet.md: {len(res['pairs'])} tables, {len(res['kd'])} KD comparisons")
    return 0


def leaderboard(cfg) -> int:
    from danas_bench.reports.leaderboard import main

    return main(cfg)


def expected(cfg) -> int:
    from danas_bench.reports import expected as ex

    root = _root(cfg)
    cands = OmegaConf.to_container(cfg.candidates)
    rid = recipe_key(cfg.get("recipe_id"))
    for pair in ex.pairs_of(cfg.pair, root, rid):
        ex.fit_pair(pair, root, rid, cands, cfg.model, int(cfg.folds), int(cfg.fold_seed), force=bool(cfg.force))
    if cfg.docs:
        print(f"wrote {ex.write_docs(root, Path(cfg.out_dir))}")
    return 0

"""The leaderboard: every searcher on every pair, many matched runs, scored on held-out seeds.

``danas-bench leaderboard`` (config ``conf/leaderboard.yaml``) runs each (pair, scoring, searcher)
over ``runs`` matched runs through :func:`danas_bench.search.run`, in ``workers`` processes.

The protocol (docs/leaderboard.md says it again next to the numbers):

- **held-out scoring** (:mod:`danas_bench.reports.heldout`): run ``r`` searches one *visible* seed, drawn from
  ``r`` alone (the same for every searcher: runs are matched), on the architectures that the scoring
  target covers; its final architecture is scored by the mean test accuracy over the *other* recorded
  seeds (``heldout_seeds``) or by the expected-accuracy view (``expected``, when its file exists);
  regret is against the best architecture under the same target;
- **noise in the repeats**: the visible seed, the searcher's RNG and every other stochastic part
  (``Searcher.run_options``, e.g. DaSS's meta seed) follow the run index;
- **statistics** (:mod:`danas_bench.core.stats`): per (pair, scoring, searcher) the mean regret with a 95%
  bootstrap CI; every claim is a one-sided paired sign-flip test over the matched runs, Holm-corrected
  across the pairs it is tested on, and holds only at adjusted p < ``alpha`` with a mean improvement
  above ``margin_pp``;
- **reference lines**: random search, the noise ceiling (the visible seed's best validation accuracy
  scored held-out) and hand-picked students; **matched controls**: ``evolution_kd`` (evolution on the
  KD table) and ``random_none`` (random search on ``none``);
- **isolation**: every number is read from the shipped table rows, never from the live overlay;
- **fail fast**: every (searcher, pair) is checked (``Searcher.preflight``) before any run.

This module runs the matched runs: the pool of benches, the pairs, the budgets, the tasks and the
worker processes. What the runs score, the summaries and the claims are
:mod:`danas_bench.reports.leaderboard_claims`; the outputs (``out``, default ``results/leaderboard.md``:
the Markdown report, its JSON twin and the anytime-regret plots in ``figures``) are written by
:mod:`danas_bench.reports.leaderboard_report`. ``run_leaderboard(...)`` is the library entry point;
``synthetic=True`` runs on the benches of :mod:`danas_bench.search.synthetic`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from danas_bench import __version__
from danas_bench.core import schema as tables
from danas_bench.core.pairs import Pair
from danas_bench.core.recipe import recipe_key
from danas_bench.reports import heldout
from danas_bench.reports.leaderboard_claims import ALPHA, CONTROLS, HANDPICKED
from danas_bench.reports.leaderboard_report import jsonable, write_report
from danas_bench.search.runner import LazyPool, Problem, run


class PreflightError(ValueError):
    """A searcher's package or data is missing (a ValueError, so the CLI prints it on one line)."""


# --- opening the pool of benches (in the main process and in every worker) ---------------------------


def open_pool(spec: Mapping) -> dict:
    """``{pair: bench}`` from a pool spec: ``{"synthetic": bool, "root": str|None, "synthetic_options": {...},
    "recipe": None|str}`` (``recipe``: a recipe id or version name; only the pairs with a table of it).

    Real tables open with ``fallback="error"``: the leaderboard never trains live."""
    if spec.get("synthetic"):
        from danas_bench.search import synthetic

        opts = dict(spec.get("synthetic_options") or {})
        datasets = opts.pop("datasets", synthetic.DATASETS[:2])
        teachers = opts.pop("teachers", synthetic.TEACHERS)
        return synthetic.open_all(datasets, teachers, **opts)
    from danas_bench.query.bench import open, open_all

    recipe = spec.get("recipe")
    if recipe is None:  # each pair's default table (open(pair)'s rule)
        return open_all(spec.get("root"), fallback="error")
    from danas_bench.query.catalog import pairs_with_recipe

    found = pairs_with_recipe(spec.get("root"), recipe)
    pool = {pair: open(pair, spec.get("root"), fallback="error", recipe_id=rid) for pair, rid in found.items()}
    if not pool:
        raise ValueError(f"no table of recipe {recipe!r} under the tables folder; pass recipe_id=null for the defaults")
    return pool


def select_pairs(pool: Mapping, pairs) -> list[str]:
    if pairs in (None, "all"):
        out = sorted(pool)
    elif pairs == "kd":
        out = sorted(p for p in pool if Pair.parse(p, check=False).kd)
    elif isinstance(pairs, str):
        out = [pairs]
    else:
        out = list(pairs)
    missing = [p for p in out if p not in pool]
    if missing:
        raise ValueError(f"pairs {missing} are not in the tables; pairs present: {', '.join(sorted(pool)) or 'none'}")
    if not out:
        raise ValueError(
            "no pairs to run: the tables hold none (make them with `danas-bench generate`, "
            "or run `danas-bench leaderboard synthetic=true` on the synthetic benches)"
        )
    return out


def run_list(runs) -> list[int]:
    """``runs``: an int n (runs 0..n-1) or a list of run indices."""
    if isinstance(runs, (int, np.integer)):
        return list(range(int(runs)))
    return [int(s) for s in runs]


def pair_budget(budget: Mapping, n_archs: int) -> dict:
    """The budget of one run on a space of ``n_archs``: ``queries`` capped at ``max_share`` of the space
    (a budget that enumerates the space measures nothing), ``seconds`` as given."""
    out = {k: v for k, v in budget.items() if k in ("queries", "seconds", "fractional_queries") and v is not None}
    share = budget.get("max_share")
    if share is not None:
        cap = max(1, int(math.floor(float(share) * n_archs)))
        out["queries"] = min(int(out.get("queries", cap)), cap)
    return out


# --- the worker ------------------------------------------------------------------------------------

_POOL: dict = {}
_SPACES: dict = {}  # (pair, scoring) -> Space
_TARGETS: dict = {}  # (pair, scoring) -> Target
_VIEWS: dict = {}  # (pair, scoring, visible) -> SearchView


def _set_pool(pool: Mapping) -> None:
    for d in (_POOL, _SPACES, _TARGETS, _VIEWS):
        d.clear()
    _POOL.update(pool)


def _init_worker(spec: Mapping) -> None:
    # one thread per worker process (read by torch when a GP searcher first imports it)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    _set_pool(open_pool(spec))


def _space(pair: str, scoring: str) -> heldout.Space:
    key = (pair, scoring)
    if key not in _SPACES:
        _SPACES[key] = heldout.Space(_POOL[pair], heldout.TARGETS[scoring].min_seeds)
    return _SPACES[key]


def _target(pair: str, scoring: str) -> heldout.Target:
    key = (pair, scoring)
    if key not in _TARGETS:
        _TARGETS[key] = heldout.TARGETS[scoring](_POOL[pair], _space(pair, scoring))
    return _TARGETS[key]


def _view(pair: str, scoring: str, visible: int, scored: bool = True) -> heldout.SearchView:
    """The view run-time code reads; other pairs (meta-learning, the ``none`` pair) need no target."""
    sp = _space(pair, scoring)
    if visible not in sp.visible_seeds:  # another pair whose covering seeds differ: its first one
        visible = sp.visible_seeds[0]
    key = (pair, scoring, visible, scored)
    if key not in _VIEWS:
        _VIEWS[key] = heldout.SearchView(_POOL[pair], sp, visible, _target(pair, scoring) if scored else None)
    return _VIEWS[key]


def _run_pool(pair: str, scoring: str, visible: int) -> LazyPool:
    """Every pair as this run sees it: same scoring's space, same visible seed, shipped rows only."""
    return LazyPool(
        list(_POOL), lambda p: _view(p, scoring, visible, scored=False), {pair: _view(pair, scoring, visible)}
    )


def _make(name: str, options: Mapping, run_index: int):
    """A fresh searcher for one run: its run-following options (meta seeds ...) unless the user fixed them."""
    from danas_bench.search.baselines import make

    follow = make(name, **dict(options)).run_options(run_index)
    return make(name, **{**follow, **dict(options)})


def runs_on(pair: str, name: str) -> bool:
    """False for a matched control on a ``none`` pair, where it would be evolution or random itself."""
    return Pair.parse(pair, check=False).kd or name not in CONTROLS


def _task(
    pairs: Sequence[str], scoring: str, names: Sequence[str], options: Mapping, runs: Sequence[int], budget: Mapping
) -> list[tuple[pl.DataFrame, dict]]:
    """All runs of the searchers ``names`` (``options``: name -> its options) on ``pairs`` (one dataset's
    pairs), run by run: DaSS's meta-training on the other datasets, the same for every teacher and for
    ``dass`` / ``dass_paper``, is done once per run and reused from its cache."""
    keys = [(p, n) for n in names for p in pairs]
    frames, walls, cpus = ({k: [] for k in keys} for _ in range(3))
    for r in runs:
        for pair in pairs:
            sp = _space(pair, scoring)
            visible = heldout.visible_seed(sp, r)
            for name in names:
                t, c = time.perf_counter(), time.process_time()
                searcher = _make(name, options.get(name, {}), r)
                f = run(
                    searcher,
                    _view(pair, scoring, visible),
                    pair_budget(budget, len(sp.archs)),
                    r,
                    pool=_run_pool(pair, scoring, visible),
                )
                walls[pair, name].append(time.perf_counter() - t)
                cpus[pair, name].append(time.process_time() - c)
                frames[pair, name].append(
                    f.with_columns(
                        pl.lit(scoring).alias("scoring"),
                        pl.lit(visible, pl.Int64).alias("visible_seed"),
                        pl.lit(name).alias("searcher"),
                        pl.lit(int(getattr(searcher, "fallbacks", 0)), pl.Int64).alias("fallbacks"),
                    )
                )
    return [
        (
            pl.concat(frames[k], how="vertical"),
            {"pair": k[0], "scoring": scoring, "searcher": k[1], "wall": walls[k], "cpu": cpus[k]},
        )
        for k in keys
    ]


# searchers that share one task (and so one process's caches): DaSS's two modes share meta-training
SHARE_TASK = {"dass_paper": "dass"}


# --- before any run ----------------------------------------------------------------------------------


def scorings_available(pair_list: Sequence[str], scorings: Sequence[str]) -> tuple[dict, dict]:
    """``({scoring: [pairs it is available on]}, {scoring: note})``; a scoring no pair offers is skipped
    with its note (for example ``expected`` before ``danas-bench expected`` has written its files)."""
    avail, notes = {}, {}
    for sc in scorings:
        if sc not in heldout.TARGETS:
            raise ValueError(f"unknown scoring {sc!r}; choices: {', '.join(heldout.TARGETS)}")
        ok, why = [], []
        for p in pair_list:
            try:
                _target(p, sc)
                ok.append(p)
            except heldout.Unavailable as e:
                why.append(str(e))
        if ok:
            avail[sc] = ok
        if why:
            notes[sc] = (
                f"`{sc}` skipped on {len(why)} of {len(pair_list)} pairs: "
                + "; ".join(why[:3])
                + (" ..." if len(why) > 3 else "")
            )
    if not avail:
        raise ValueError("no scoring target is available on the selected pairs: " + " ".join(notes.values()))
    return avail, notes


def preflight(searchers: Sequence[str], options: Mapping, avail: Mapping[str, Sequence[str]]) -> None:
    """Build every (searcher, pair) task's problem and call ``Searcher.preflight``: the first missing
    package or data file ends the leaderboard here, with one line, before any run."""
    for sc, pairs in avail.items():
        for pair in pairs:
            visible = heldout.visible_seed(_space(pair, sc), 0)
            problem = Problem(_view(pair, sc, visible), _run_pool(pair, sc, visible))
            for name in searchers:
                try:
                    _make(name, options.get(name, {}), 0).preflight(problem)
                except Exception as e:  # noqa: BLE001 - any failure ends the leaderboard, on one line
                    msg = " ".join(str(e).split()) or type(e).__name__
                    raise PreflightError(f"searcher {name} cannot run on {pair}: {type(e).__name__}: {msg}") from e
        break  # the searched pairs are the same under every scoring; their data is checked once


def run_leaderboard(
    searchers: Sequence[str],
    pairs="all",
    runs=20,
    budget: Mapping | None = None,
    options: Mapping | None = None,
    workers: int = 1,
    synthetic: bool = False,
    synthetic_options: Mapping | None = None,
    root: str | None = None,
    progress: bool = True,
    scorings: Sequence[str] = ("heldout_seeds", "expected"),
    recipe: str | None = None,
) -> tuple[pl.DataFrame, list[dict], dict]:
    """Run every searcher on every pair, scoring and run. Returns (all trajectories, per-task timings, context)."""
    from danas_bench.search.baselines import ALIASES, searcher_class

    budget = {k: v for k, v in dict(budget or {"queries": 100}).items() if v is not None}
    if not {"queries", "seconds"} & set(budget):
        raise ValueError("the leaderboard needs a budget: queries and/or seconds")
    options = {k: dict(v) for k, v in dict(options or {}).items()}
    searchers = [ALIASES.get(s, s) for s in searchers]
    for s in searchers:
        searcher_class(s)  # unknown names fail before any work
    spec = {"synthetic": bool(synthetic), "synthetic_options": dict(synthetic_options or {}), "root": root}
    spec["recipe"] = recipe
    pool = open_pool(spec)
    _set_pool(pool)
    pair_list = select_pairs(pool, pairs)
    runs = run_list(runs)
    avail, notes = scorings_available(pair_list, list(scorings))
    preflight(searchers, options, avail)
    # one task per (dataset, scoring, searcher family); slow ones first, so the workers finish together
    weight = {"dass": 5, "trade": 3, "autokd": 3, "optuna_tpe": 2}
    groups: dict = {}
    for sc, ps in avail.items():
        for p in ps:
            for s in searchers:
                if runs_on(p, s):
                    fam = SHARE_TASK.get(s, s)
                    g = groups.setdefault((Pair.parse(p, check=False).dataset, sc, fam), {"names": [], "pairs": []})
                    g["names"] += [] if s in g["names"] else [s]
                    g["pairs"] += [] if p in g["pairs"] else [p]
    tasks = sorted(
        ((g["pairs"], sc, tuple(g["names"])) for (_, sc, _), g in groups.items()),
        key=lambda t: -weight.get(SHARE_TASK.get(t[2][0], t[2][0]), 1) * len(t[0]) * len(t[2]),
    )
    results: list[tuple[pl.DataFrame, dict]] = []
    bar = _progress(len(tasks), progress)
    t0 = time.perf_counter()
    if workers <= 1:
        for ps, sc, names in tasks:
            results += _task(ps, sc, names, {n: options.get(n, {}) for n in names}, runs, budget)
            bar(f"{Pair.parse(ps[0], check=False).dataset} {' '.join(names)}")
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ex = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(spec,)
        )
        futs = {
            ex.submit(_task, ps, sc, names, {n: options.get(n, {}) for n in names}, runs, budget): (
                Pair.parse(ps[0], check=False).dataset,
                *names,
            )
            for ps, sc, names in tasks
        }
        try:
            for f in as_completed(futs):
                results += f.result()
                bar(" ".join(futs[f]))
        except BaseException:  # the first failure cancels the rest: pending tasks and our running workers
            for p in list(getattr(ex, "_processes", {}).values()):
                p.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
    frames = pl.concat([r[0] for r in results], how="vertical")
    timings = [r[1] for r in results]
    context = {
        "searchers": searchers,
        "pairs": pair_list,
        "runs": runs,
        "budget": budget,
        # per scoring, then pair: a scoring searches its own space (held-out scoring only the cells with
        # another recorded seed), so the same pair can have a different query cap under each
        "budgets": {sc: {p: pair_budget(budget, len(_space(p, sc).archs)) for p in ps} for sc, ps in avail.items()},
        "options": options,
        "scorings": list(avail),
        "scoring_pairs": avail,
        "notes": notes,
        "synthetic": bool(synthetic),
        "wall_seconds": time.perf_counter() - t0,
        "workers": workers,
        "tables": {p: table_version(pool[p]) for p in pair_list},
        "spaces": {
            sc: {
                p: {
                    "archs": int(len(_space(p, sc).archs)),
                    "table_archs": _space(p, sc).table_archs,
                    "whole": _space(p, sc).whole,
                    "visible_seeds": _space(p, sc).visible_seeds,
                    "description": _space(p, sc).describe(),
                    "target": _target(p, sc).note,
                }
                for p in ps
            }
            for sc, ps in avail.items()
        },
        "references": {sc: {p: references(p, sc, runs) for p in ps} for sc, ps in avail.items()},
        "code": code_version(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "configs": {s: _searcher_config(s, options.get(s, {})) for s in searchers},
    }
    return frames, timings, context


def references(pair: str, scoring: str, runs: Sequence[int]) -> dict:
    """Per-run regrets (pp) of the reference lines: the noise ceiling (the visible seed's best validation
    accuracy, scored on the target) and the hand-picked students that the searched space holds."""
    from danas_bench.core import space

    out: dict = {"noise_ceiling": [], "visible_seed": [], "uniform_pick": []}
    for r in runs:
        visible = heldout.visible_seed(_space(pair, scoring), r)
        view = _view(pair, scoring, visible)
        out["visible_seed"].append(visible)
        out["noise_ceiling"].append(100 * heldout.noise_ceiling(view))
        best = view.best()[1]
        # a uniformly random pick's expected regret: what a run scores before its first full-epoch answer
        out["uniform_pick"].append(100 * (best - float(np.nanmean(view._need_target()))))
        for name, arch in HANDPICKED.items():
            try:
                v = view.test(space.canonical(arch))
            except KeyError:  # not in the searched space
                continue
            out.setdefault(name, []).append(100 * (best - v))
    return out


def _progress(total: int, on: bool):
    """A progress bar with an ETA (tqdm) on stderr."""
    if not on:
        return lambda msg: None
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="leaderboard", unit="task", file=sys.stderr)

        def step(msg):
            bar.set_postfix_str(msg)
            bar.update(1)
            if bar.n >= total:
                bar.close()

        return step
    except ImportError:  # pragma: no cover
        done, t0 = [0], time.perf_counter()

        def step(msg):
            done[0] += 1
            eta = (time.perf_counter() - t0) / done[0] * (total - done[0])
            print(f"[{done[0]}/{total}, ETA {eta:.0f} s] {msg}", file=sys.stderr)

        return step


def _searcher_config(name: str, options: Mapping) -> dict:
    from danas_bench.search.baselines import make

    s = make(name, **dict(options))
    return {
        "config_id": s.config_id(),
        "config": {k: jsonable(v) for k, v in s.config.items()},
        "follows_run": sorted(s.run_options(0)),
    }


def table_version(bench) -> dict:
    """What identifies the table a leaderboard row was computed on."""
    meta = dict(getattr(bench, "meta", {}) or {})
    out = {
        k: meta[k]
        for k in (
            "version",
            "table_version",
            "recipe_id",
            "schema_version",
            "code_version",
            "sampled",
            "partial",
            "coverage",
            "rows",
        )
        if k in meta
    }
    path = getattr(bench, "path", None)
    if path is not None and Path(path).exists():
        out["file"] = Path(path).name
        out["sha256"] = tables.sha256(Path(path))[:16]
    out["archs"] = int(len(bench.archs))
    out["seeds"] = [int(s) for s in bench.seeds]
    return out


def code_version() -> dict:
    out = {"danas_bench": __version__}
    rev, dirty = tables.git_revision()
    if rev is not None:
        out.update({"git": rev, "dirty": dirty})
    return out


def main(cfg) -> int:
    """The body of ``danas-bench leaderboard`` (``cfg``: the composed ``conf/leaderboard.yaml``)."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    base, user = c.get("base_options") or {}, c.get("options") or {}
    options = {k: {**dict(base.get(k) or {}), **dict(user.get(k) or {})} for k in {*base, *user}}
    frames, timings, context = run_leaderboard(
        c["searchers"],
        c.get("pairs", "all"),
        c.get("runs", 20),
        c.get("budget"),
        options,
        int(c.get("workers", 1)),
        bool(c.get("synthetic", False)),
        c.get("synthetic_options") or {},
        c.get("root"),
        bool(c.get("progress", True)),
        c.get("scorings") or ["heldout_seeds", "expected"],
        recipe_key(c.get("recipe_id")),
    )
    out = Path(c.get("out", "results/leaderboard.md"))
    compare = c.get("compare") or []
    compare = [compare] if isinstance(compare, str) else list(compare)
    # never against the leaderboard being written (`make leaderboard-docs` rewrites a shipped one)
    shipped = [Path(p) for p in compare if Path(p).resolve() != out.with_suffix(".json").resolve()] or None
    figures = c.get("figures", "results/figures")  # figures=null: no plots
    payload = write_report(
        frames,
        timings,
        context,
        out,
        None if figures is None else Path(figures),
        alpha=float(c.get("alpha", ALPHA)),
        margin_pp=float(c.get("margin_pp", 0.0)),
        shipped=shipped,
    )
    if c.get("trajectories"):
        Path(c["trajectories"]).parent.mkdir(parents=True, exist_ok=True)
        frames.write_parquet(c["trajectories"])
    print(
        f"wrote {out} ({len(context['pairs'])} pairs x {len(context['searchers'])} searchers x "
        f"{len(context['runs'])} runs x {len(context['scorings'])} scorings in {context['wall_seconds']:.0f} s)"
    )
    by: dict = {}
    for r in payload["claims"]:
        by.setdefault((r["claim"], r["scoring"]), []).append(r["holds"])
    for (claim, sc), h in by.items():
        print(f"  {claim} [{sc}]: holds on {sum(h)} / {len(h)} pairs")
    rep = payload.get("reproduces")
    if rep and rep["compared"]:
        print(f"  against {rep['shipped']}: {rep['inside_ci']} / {rep['compared']} shipped means inside this run's CIs")
    return 0


__all__ = [
    "run_leaderboard",
    "main",
    "preflight",
    "PreflightError",
    "open_pool",
    "select_pairs",
    "pair_budget",
    "references",
    "table_version",
    "code_version",
]

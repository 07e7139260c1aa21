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

Outputs (``out``, default ``results/leaderboard.md``): the Markdown report, its JSON twin and the
anytime-regret plots in ``figures``. ``run_leaderboard(...)`` is the library entry point;
``synthetic=True`` runs on the benches of :mod:`danas_bench.search.synthetic`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from danas_bench import __version__
from danas_bench.reports import heldout
from danas_bench.core import stats
from danas_bench.core import schema as tables
from danas_bench.search.runner import LazyPool, Problem, config_id, final, run

ALPHA = stats.ALPHA


class PreflightError(ValueError):
    """A searcher's package or data is missing (a ValueError, so the CLI prints it on one line)."""


# --- opening the pool of benches (in the main process and in every worker) ---------------------------


def open_pool(spec: Mapping) -> dict:
    """``{pair: bench}`` from a pool spec: ``{"synthetic": bool, "root": str|None, "synthetic_options": {...}}``.

    Real tables open with ``fallback="error"``: the leaderboard never trains live."""
    if spec.get("synthetic"):
        from danas_bench.search import synthetic

        opts = dict(spec.get("synthetic_options") or {})
        datasets = opts.pop("datasets", synthetic.DATASETS[:2])
        teachers = opts.pop("teachers", synthetic.TEACHERS)
        return synthetic.open_all(datasets, teachers, **opts)
    from danas_bench.query.bench import open_all

    return open_all(spec.get("root"), fallback="error")


def select_pairs(pool: Mapping, pairs) -> list[str]:
    if pairs in (None, "all"):
        out = sorted(pool)
    elif pairs == "kd":
        out = sorted(p for p in pool if not p.endswith("/none"))
    elif isinstance(pairs, str):
        out = [pairs]
    else:
        out = list(pairs)
    missing = [p for p in out if p not in pool]
    if missing:
        raise ValueError(f"pairs {missing} are not in the tables; pairs present: {', '.join(sorted(pool)) or 'none'}")
    if not out:
        raise ValueError("no pairs to run: the tables hold none (make them with `danas-bench generate`, "
                         "or run `danas-bench leaderboard synthetic=true` on the synthetic benches)")
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
_SPACES: dict = {}    # (pair, scoring) -> Space
_TARGETS: dict = {}   # (pair, scoring) -> Target
_VIEWS: dict = {}     # (pair, scoring, visible) -> SearchView


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
    return LazyPool(list(_POOL), lambda p: _view(p, scoring, visible, scored=False),
                    {pair: _view(pair, scoring, visible)})


def _make(name: str, options: Mapping, run_index: int):
    """A fresh searcher for one run: its run-following options (meta seeds ...) unless the user fixed them."""
    from danas_bench.search.baselines import make

    follow = make(name, **dict(options)).run_options(run_index)
    return make(name, **{**follow, **dict(options)})


CONTROLS = {"evolution_kd", "random_none"}  # on a `none` pair they are evolution and random themselves


def runs_on(pair: str, name: str) -> bool:
    return not (pair.endswith("/none") and name in CONTROLS)


def _task(pairs: Sequence[str], scoring: str, names: Sequence[str], options: Mapping, runs: Sequence[int],
          budget: Mapping) -> list[tuple[pl.DataFrame, dict]]:
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
                f = run(searcher, _view(pair, scoring, visible), pair_budget(budget, len(sp.archs)), r,
                        pool=_run_pool(pair, scoring, visible))
                walls[pair, name].append(time.perf_counter() - t)
                cpus[pair, name].append(time.process_time() - c)
                frames[pair, name].append(f.with_columns(pl.lit(scoring).alias("scoring"),
                                                         pl.lit(visible, pl.Int64).alias("visible_seed"),
                                                         pl.lit(name).alias("searcher"),
                                                         pl.lit(int(getattr(searcher, "fallbacks", 0)), pl.Int64)
                                                         .alias("fallbacks")))
    return [(pl.concat(frames[k], how="vertical"),
             {"pair": k[0], "scoring": scoring, "searcher": k[1], "wall": walls[k], "cpu": cpus[k]}) for k in keys]


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
            notes[sc] = (f"`{sc}` skipped on {len(why)} of {len(pair_list)} pairs: " + "; ".join(why[:3])
                         + (" ..." if len(why) > 3 else ""))
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


def run_leaderboard(searchers: Sequence[str], pairs="all", runs=20, budget: Mapping | None = None,
                    options: Mapping | None = None, workers: int = 1, synthetic: bool = False,
                    synthetic_options: Mapping | None = None, root: str | None = None, progress: bool = True,
                    scorings: Sequence[str] = ("heldout_seeds", "expected"),
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
                    g = groups.setdefault((p.split("/")[0], sc, fam), {"names": [], "pairs": []})
                    g["names"] += [] if s in g["names"] else [s]
                    g["pairs"] += [] if p in g["pairs"] else [p]
    tasks = sorted(((g["pairs"], sc, tuple(g["names"])) for (_, sc, _), g in groups.items()),
                   key=lambda t: -weight.get(SHARE_TASK.get(t[2][0], t[2][0]), 1) * len(t[0]) * len(t[2]))
    results: list[tuple[pl.DataFrame, dict]] = []
    bar = _progress(len(tasks), progress)
    t0 = time.perf_counter()
    if workers <= 1:
        for ps, sc, names in tasks:
            results += _task(ps, sc, names, {n: options.get(n, {}) for n in names}, runs, budget)
            bar(f"{ps[0].split('/')[0]} {' '.join(names)}")
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(spec,))
        futs = {ex.submit(_task, ps, sc, names, {n: options.get(n, {}) for n in names}, runs, budget):
                (ps[0].split("/")[0], *names) for ps, sc, names in tasks}
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
        "searchers": searchers, "pairs": pair_list, "runs": runs, "budget": budget,
        "budgets": {p: pair_budget(budget, len(_space(p, sc).archs)) for sc, ps in avail.items() for p in ps},
        "options": options, "scorings": list(avail), "scoring_pairs": avail, "notes": notes,
        "synthetic": bool(synthetic), "wall_seconds": time.perf_counter() - t0, "workers": workers,
        "tables": {p: table_version(pool[p]) for p in pair_list},
        "spaces": {sc: {p: {"archs": int(len(_space(p, sc).archs)), "table_archs": _space(p, sc).table_archs,
                            "whole": _space(p, sc).whole, "visible_seeds": _space(p, sc).visible_seeds,
                            "description": _space(p, sc).describe(), "target": _target(p, sc).note}
                        for p in ps} for sc, ps in avail.items()},
        "references": {sc: {p: references(p, sc, runs) for p in ps} for sc, ps in avail.items()},
        "code": code_version(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "configs": {s: _searcher_config(s, options.get(s, {})) for s in searchers},
    }
    return frames, timings, context


# hand-picked students (no search): NAS-Bench-201's ResNet cell and the all-3x3-conv cell
HANDPICKED = {
    "resnet_cell": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "all_conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
}


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
    return {"config_id": s.config_id(), "config": {k: _jsonable(v) for k, v in s.config.items()},
            "follows_run": sorted(s.run_options(0))}


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def table_version(bench) -> dict:
    """What identifies the table a leaderboard row was computed on."""
    meta = dict(getattr(bench, "meta", {}) or {})
    out = {k: meta[k] for k in ("version", "table_version", "recipe_id", "schema_version", "code_version",
                                "sampled", "partial", "coverage", "rows") if k in meta}
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


# --- per-run results, summaries, claims -------------------------------------------------------------


def time_budgets(frames: pl.DataFrame) -> dict[str, float]:
    """Per pair, the simulated-time budget of the time view: the median simulated seconds random search
    spends on the query budget (the expected cost of that many uniform draws; every searcher's cost per
    architecture is the same deterministic one), or the median over all runs without random search."""
    out = {}
    for pair, g in frames.group_by("pair", maintain_order=True):
        spent = g.group_by(["scoring", "searcher", "seed"]).agg(pl.col("cum_seconds").max())
        rnd = spent.filter(pl.col("searcher") == "random")
        out[pair[0] if isinstance(pair, tuple) else pair] = float((rnd if rnd.height else spent)["cum_seconds"].median())
    return out


def _regret_at(g: pl.DataFrame, seconds: float, blind: float | None) -> float:
    """Regret (pp) of the run's incumbent once ``seconds`` of simulated time are spent: the last answer that
    fits the time budget; a run with no full-epoch answer within it counts as a uniform pick."""
    within = g.filter(pl.col("cum_seconds") <= seconds * (1 + 1e-9))["regret"].drop_nulls()
    if within.len():
        return 100 * float(within[-1])
    return np.nan if blind is None else float(blind)


def finals(frames: pl.DataFrame, context: dict) -> pl.DataFrame:
    """One row per (pair, scoring, searcher, run): final regret (pp), cost to the final incumbent, the
    anytime regret (mean regret over the first quarter of the run's query budget, pp), and the regret at
    the pair's simulated-time budget (``time_budgets``): the same runs read under a time budget."""
    rows = []
    tbud = context.setdefault("time_budgets", time_budgets(frames))
    for (pair, sc, name, r), g in frames.group_by(["pair", "scoring", "searcher", "seed"], maintain_order=True):
        f = final(g)
        q = int(context["budgets"][pair].get("queries") or g["cum_queries"].max())
        early = g.filter(pl.col("cum_queries") <= max(q // 4, 1))
        # before a run's first full-epoch answer (AutoKD's low-epoch rungs) it has no incumbent: those
        # queries count as a uniformly random pick (its expected regret on this run's target)
        blind = dict(zip(context["runs"], context.get("references", {}).get(sc, {}).get(pair, {})
                         .get("uniform_pick", [])))
        reg = early["regret"] * 100
        reg = reg.fill_null(blind[int(r)]) if int(r) in blind else reg.fill_null(strategy="backward")
        anytime = float(reg.mean()) if early.height and reg.null_count() < early.height else np.nan
        rows.append({"pair": pair, "scoring": sc, "searcher": name, "run": int(r),
                     "visible_seed": int(g["visible_seed"][0]), "regret": 100 * float(f["regret"]),
                     "anytime": anytime, "regret_time": _regret_at(g, tbud[pair], blind.get(int(r))), "queries_to_final": f["queries_to_final"],
                     "seconds_to_final": f["seconds_to_final"], "queries": f["queries"], "seconds": f["seconds"],
                     "fallbacks": int(g["fallbacks"][0]) if "fallbacks" in g.columns and g.height else 0})
    return pl.DataFrame(rows).sort(["pair", "scoring", "searcher", "run"])


def summarize(fin: pl.DataFrame, timings: list[dict]) -> pl.DataFrame:
    """One row per (pair, scoring, searcher): mean regret with its 95% bootstrap CI, and the costs."""
    wall = {(t["pair"], t["scoring"], t["searcher"]): t for t in timings}
    rows = []
    for (pair, sc, name), g in fin.group_by(["pair", "scoring", "searcher"], maintain_order=True):
        reg = g["regret"].to_numpy()
        t = wall.get((pair, sc, name), {})
        rows.append({
            "pair": pair, "scoring": sc, "searcher": name, "runs": len(reg),
            "regret_mean": float(np.mean(reg)), "regret_ci95": list(stats.bootstrap_ci(reg, key=f"{pair}{sc}{name}")),
            "regret_median": float(np.median(reg)), "found_best": float(np.mean(reg <= 1e-9)),
            # the same runs under the pair's simulated-time budget (context["time_budgets"])
            "regret_time_mean": float(np.nanmean(g["regret_time"].to_numpy())),
            "regret_time_ci95": list(stats.bootstrap_ci(g["regret_time"].drop_nans().to_numpy(),
                                                        key=f"{pair}{sc}{name}time")),
            "queries_to_final": float(g["queries_to_final"].mean()),
            "seconds_to_final": float(g["seconds_to_final"].mean()),
            "queries": float(g["queries"].mean()), "seconds": float(g["seconds"].mean()),
            # random fallbacks per run (asks the method replaced by a random architecture) and their share
            "fallbacks_mean": float(g["fallbacks"].mean()), "fallbacks_max": int(g["fallbacks"].max()),
            "fallback_share": float(g["fallbacks"].sum() / max(g["queries"].sum(), 1)),
            "wall_per_run": float(np.mean(t.get("wall", [np.nan]))),
            "cpu_per_run": float(np.mean(t.get("cpu", [np.nan]))),
        })
    df = pl.DataFrame(rows)
    return df.with_columns(pl.col("regret_mean").rank("average").over(["pair", "scoring"]).alias("rank")
                           ).sort(["scoring", "pair", "rank"])


def claim_specs(context: dict) -> list[dict]:
    """The claims tested: (method, baseline, measure, pairs). Lower regret is better in every measure."""
    have = set(context["searchers"])
    kd = lambda p: not p.endswith("/none")  # noqa: E731 - NAS-then-KD is the same problem on `none`
    every = lambda p: True  # noqa: E731
    specs = [
        ("AKD: KD-guided search beats NAS-then-KD", "akd", "evolution", "regret", kd),
        ("TRADE: beats conventional NAS (NAS-then-KD)", "trade", "evolution", "regret", kd),
        ("control: the KD signal beats the no-KD signal (evolution on KD vs on none)", "evolution_kd",
         "evolution", "regret", kd),
        ("control: the KD signal beats the no-KD signal (random on KD vs on none)", "random", "random_none",
         "regret", kd),
        ("AKD beats evolution on the same KD table (algorithm only)", "akd", "evolution_kd", "regret", kd),
        ("TRADE beats evolution on the same KD table (algorithm only)", "trade", "evolution_kd", "regret", kd),
        ("DaSS: a predictor meta-trained on other datasets transfers (beats random)", "dass", "random",
         "regret", every),
        ("DaSS: querying students (this adaptation) beats the paper's top-1 pick", "dass", "dass_paper",
         "regret", every),
        ("AutoKD: sample efficiency (vs random)", "autokd", "random", "anytime", every),
        ("AutoKD: sample efficiency (vs trade)", "autokd", "trade", "anytime", every),
    ]
    out = [{"claim": c, "method": a, "baseline": b, "measure": m, "pairs": f} for c, a, b, m, f in specs
           if a in have and b in have]
    for name in context["searchers"]:
        if name != "random" and name not in CONTROLS and "random" in have:
            out.append({"claim": f"{name} beats random search", "method": name, "baseline": "random",
                        "measure": "regret", "pairs": every})
    if "trade" in have:
        for hp in HANDPICKED:
            out.append({"claim": f"TRADE: beats a hand-picked student ({hp})", "method": "trade", "baseline": hp,
                        "measure": "regret", "pairs": every})
    return out


MEASURES = {"regret": "final regret (pp)",
            "anytime": "mean regret over the first quarter of the query budget (pp; before the first full-epoch "
                       "answer: a uniformly random pick's)"}


def claims(fin: pl.DataFrame, context: dict, alpha: float = ALPHA, margin_pp: float = 0.0) -> list[dict]:
    """Every claim, per scoring and pair: paired one-sided test over matched runs, Holm across pairs.

    Row fields: claim, scoring, pair, method, baseline, measure, runs, method_mean, baseline_mean,
    diff_mean (baseline minus method: > 0 means the method is better), diff_ci95, p, p_holm, holds
    (p_holm < alpha and diff_mean > margin_pp), threshold.
    """
    out = []
    threshold = f"one-sided paired sign-flip test, Holm across pairs, p_holm < {alpha:g}; mean gain > {margin_pp:g} pp"
    for spec in claim_specs(context):
        for sc in context["scorings"]:
            rows = []
            for pair in context["scoring_pairs"][sc]:
                if not spec["pairs"](pair):
                    continue
                a = fin.filter((pl.col("pair") == pair) & (pl.col("scoring") == sc) & (pl.col("searcher") == spec["method"]))
                if a.height == 0:
                    continue
                ref = context["references"][sc][pair]
                if spec["baseline"] in HANDPICKED:
                    if spec["baseline"] not in ref:
                        continue
                    b = pl.DataFrame({"run": context["runs"], "b": ref[spec["baseline"]]})
                else:
                    b = fin.filter((pl.col("pair") == pair) & (pl.col("scoring") == sc)
                                   & (pl.col("searcher") == spec["baseline"])).select("run", pl.col(spec["measure"]).alias("b"))
                    if b.height == 0:
                        continue
                m = a.select("run", pl.col(spec["measure"]).alias("a")).join(b, on="run", how="inner")
                d = (m["b"] - m["a"]).to_numpy()
                key = f"{spec['claim']}|{sc}|{pair}"
                rows.append({"claim": spec["claim"], "scoring": sc, "pair": pair, "method": spec["method"],
                             "baseline": spec["baseline"], "measure": MEASURES[spec["measure"]], "runs": len(d),
                             "method_mean": float(m["a"].mean()), "baseline_mean": float(m["b"].mean()),
                             "diff_mean": float(np.mean(d)), "diff_ci95": list(stats.bootstrap_ci(d, key=key)),
                             "p": stats.paired_test(d, margin_pp, key=key), "threshold": threshold})
            for r, ph in zip(rows, stats.holm([r["p"] for r in rows])):
                r["p_holm"] = float(ph)
                r["holds"] = bool(ph < alpha and r["diff_mean"] > margin_pp)
            out += rows
    return out


def reproduces(payload: dict, shipped: Path) -> dict | None:
    """How many of the shipped leaderboard's (pair, scoring, searcher) means fall inside this run's 95% CIs."""
    try:
        old = json.loads(Path(shipped).read_text())
    except (OSError, ValueError):
        return None
    theirs = {(r.get("pair"), r.get("scoring"), r.get("searcher")): r.get("regret_mean")
              for rows in (old.get("pairs") or {}).values() if isinstance(rows, list) for r in rows}
    inside, total, off = 0, 0, []
    for rows in payload["pairs"].values():
        for r in rows:
            v = theirs.get((r["pair"], r["scoring"], r["searcher"]))
            if v is None:
                continue
            total += 1
            lo, hi = r["regret_ci95"]
            if lo - 1e-9 <= v <= hi + 1e-9:
                inside += 1
            else:
                off.append(f"{r['pair']} {r['searcher']} ({r['scoring']}): shipped {v:.3f}, here [{lo:.3f}, {hi:.3f}]")
    return {"shipped": str(shipped), "compared": total, "inside_ci": inside, "outside": off}


# --- plots and the report ----------------------------------------------------------------------------

def _slug(pair: str) -> str:
    return pair.replace("/", "__")


def plot(frames: pl.DataFrame, pair: str, scoring: str, out: Path, order: Sequence[str] | None = None,
         ceiling: float | None = None) -> Path:
    """Anytime regret against queries and simulated seconds (mean over runs, band: standard error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = frames.filter((pl.col("pair") == pair) & (pl.col("scoring") == scoring))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    qmax = int(g["cum_queries"].max())
    smax = float(g["cum_seconds"].max())
    qgrid = np.arange(1, qmax + 1)
    sgrid = np.linspace(0, smax, 200)
    names = list(order or []) + sorted(set(g["searcher"]) - set(order or []))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(names):
        h = g.filter(pl.col("searcher") == name)
        if h.height == 0:
            continue
        curves_q, curves_s = [], []
        for _, r in h.group_by("seed", maintain_order=True):
            reg = r["regret"].fill_null(np.nan).to_numpy() * 100
            q = r["cum_queries"].to_numpy()
            s = r["cum_seconds"].to_numpy()
            iq = np.searchsorted(q, qgrid, side="right") - 1
            curves_q.append(np.where(iq >= 0, reg[np.clip(iq, 0, None)], np.nan))
            is_ = np.searchsorted(s, sgrid, side="right") - 1
            curves_s.append(np.where(is_ >= 0, reg[np.clip(is_, 0, None)], np.nan))
        for ax, grid, curves in ((axes[0], qgrid, curves_q), (axes[1], sgrid, curves_s)):
            c = np.array(curves)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns before the first query
                m = np.nanmean(c, 0) if c.size else c
                se = np.nanstd(c, 0) / np.sqrt(np.maximum((~np.isnan(c)).sum(0), 1))
            color = colors[k % len(colors)]
            ax.plot(grid, m, label=name, lw=1.6, color=color, ls="-" if k < len(colors) else "--")
            ax.fill_between(grid, m - se, m + se, color=color, alpha=0.15, lw=0)
    for ax in axes:
        if ceiling is not None:
            ax.axhline(ceiling, color="k", ls=":", lw=1, label="noise ceiling")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("queries")
    axes[1].set_xlabel("simulated training seconds (deterministic cost per architecture)")
    axes[0].set_ylabel(f"regret of the incumbent (pp, {scoring})")
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(f"{pair}: anytime regret ({scoring}; mean over runs, band: standard error)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _ci(x) -> str:
    return f"[{x[0]:.2f}, {x[1]:.2f}]"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"


def write_report(frames: pl.DataFrame, timings: list[dict], context: dict, out: Path, figures: Path,
                 command: str = "danas-bench leaderboard", alpha: float = ALPHA, margin_pp: float = 0.0,
                 shipped: Path | None = None) -> dict:
    """Write the Markdown leaderboard, its JSON twin and the plots; return the JSON payload."""
    out, figures = Path(out), None if figures is None else Path(figures)
    fin = finals(frames, context)
    summary = summarize(fin, timings)
    crows = claims(fin, context, alpha, margin_pp)
    budget = context["budget"]
    code = context["code"]
    cdesc = f"danas-bench {code['danas_bench']}" + (f", git {code['git']}" + (" (uncommitted changes)" if code.get(
        "dirty") else "") if "git" in code else "")
    n = len(context["runs"])
    bdesc = ", ".join(f"{k} {v}" if isinstance(v, bool) else f"{k} {v:g}" for k, v in budget.items())
    lines = [
        "# Leaderboard", "",
        f"Generated by `{command}` on {context['date']} in {context['wall_seconds']:.0f} s "
        f"({context['workers']} worker{'s' if context['workers'] != 1 else ''}). Code: {cdesc}.", "",
        f"**Protocol.** {n} matched runs per (searcher, pair, scoring). Run *r* searches one *visible* seed, drawn "
        "from *r* alone (the same for every searcher), and sees its validation accuracy only; its final "
        "incumbent (best visible validation accuracy) is scored by the **target**, which never reads the visible "
        "seed: `heldout_seeds` = mean test accuracy over the architecture's other recorded seeds; `expected` = the "
        "expected-accuracy view (cross-fitted estimate of the seed mean). **Regret** = the target's best "
        "architecture in the searched space minus the incumbent's target value, in percentage points. The "
        "searcher's RNG and every other stochastic part (DaSS's meta seed) follow the run index. Scores read the "
        "shipped table rows only, never the live overlay.", "",
        f"**Budget** ({bdesc}): per run, queries capped at `max_share` of the searched space; a query costs a "
        "deterministic simulated time per architecture (a fit of the pair's recorded seconds on the "
        "architecture's FLOPs, the same in every run), shown on the right-hand axis of each plot"
        + ("; a query at epoch e of E (AutoKD's Hyperband rungs) costs e/E of a query and of that time"
           if budget.get("fractional_queries") else "") + ". Per pair: "
        + "; ".join(f"{p} {b.get('queries', '-')} queries" for p, b in context["budgets"].items()) + ".", "",
        f"**Statistics.** Mean regret with a 95% percentile-bootstrap CI over runs. A claim is a one-sided paired "
        f"sign-flip permutation test over the matched runs (H0: the method's mean gain <= {margin_pp:g} pp), "
        f"Holm-corrected across the pairs it is tested on; it **holds** only at p_holm < {alpha:g} with a mean gain "
        f"above {margin_pp:g} pp. Reference lines: `random` (a searcher), the **noise ceiling** (the visible seed's "
        "best validation accuracy over the whole searched space, scored on the target: what a perfect searcher of "
        "the visible signal reaches) and hand-picked students. Matched controls: `evolution_kd` (evolution on the "
        "KD table) and `random_none` (random search on `none`), so that KD-aware vs NAS-then-KD compares the signal "
        "searched on, not the algorithm. Method descriptions and departures from the papers: "
        "[searchers.md](searchers.md).", "",
    ]
    if context.get("synthetic"):
        lines += ["> **Synthetic benches** (`synthetic=true`): made-up accuracies from `danas_bench.search.synthetic`, "
                  "not real tables. These numbers test the machinery, not the methods.", ""]
    for sc, note in context.get("notes", {}).items():
        lines += [f"> **Note:** {note}", ""]
    payload: dict = {"context": context, "pairs": {}, "references": {}, "claims": crows}
    # claims first: what users cite
    if crows:
        lines += ["## Claims", "", "| claim | scoring | holds on | pairs where it holds (gain pp, p_holm) |",
                  "|---|---|---:|---|"]
        seen = []
        for r in crows:
            k = (r["claim"], r["scoring"])
            if k not in seen:
                seen.append(k)
        for c, sc in seen:
            rs = [r for r in crows if r["claim"] == c and r["scoring"] == sc]
            held = [f"{r['pair']} ({r['diff_mean']:+.2f}, {_p(r['p_holm'])})" for r in rs if r["holds"]]
            lines.append(f"| {c} | {sc} | {sum(r['holds'] for r in rs)} / {len(rs)} | {', '.join(held) or '-'} |")
        lines += ["", "Every test, per pair (gain = baseline's measure minus the method's; > 0: the method is better):",
                  "", "| claim | scoring | pair | measure | method | baseline | gain [95% CI] | p | p_holm | holds |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
        for r in crows:
            lines.append(f"| {r['claim']} | {r['scoring']} | {r['pair']} | {r['measure']} | {r['method_mean']:.2f} | "
                         f"{r['baseline_mean']:.2f} | {r['diff_mean']:+.2f} {_ci(r['diff_ci95'])} | {_p(r['p'])} | "
                         f"{_p(r['p_holm'])} | {'yes' if r['holds'] else 'no'} |")
        lines.append("")
    for sc in context["scorings"]:
        s_sc = summary.filter(pl.col("scoring") == sc)
        overall = (s_sc.group_by("searcher").agg(pl.col("regret_mean").mean().alias("mean_regret"),
                                                 pl.col("rank").mean().alias("mean_rank"),
                                                 pl.col("wall_per_run").mean().alias("wall"))
                   .sort("mean_rank"))
        ceil = np.mean([np.mean(context["references"][sc][p]["noise_ceiling"]) for p in context["scoring_pairs"][sc]])
        lines += [f"## Across pairs: `{sc}`", "", "| searcher | mean rank | mean final regret (pp) | wall s / run |",
                  "|---|---:|---:|---:|"]
        for r in overall.iter_rows(named=True):
            lines.append(f"| {r['searcher']} | {r['mean_rank']:.2f} | {r['mean_regret']:.3f} | {r['wall']:.2f} |")
        lines += [f"| *noise ceiling* | | {ceil:.3f} | |", ""]
        for pair in context["scoring_pairs"][sc]:
            tv = context["tables"][pair]
            spc = context["spaces"][sc][pair]
            ref = context["references"][sc][pair]
            s = s_sc.filter(pl.col("pair") == pair)
            rel = None
            if figures is not None:
                fig = figures / f"leaderboard_{_slug(pair)}__{sc}.png"
                plot(frames, pair, sc, fig, context["searchers"], float(np.mean(ref["noise_ceiling"])))
                rel = os.path.relpath(fig, out.parent)
            tdesc = ", ".join(f"{k} {v}" for k, v in tv.items() if k not in ("seeds",))
            vis = np.bincount(ref["visible_seed"]).tolist()
            lines += [f"### {pair} (`{sc}`)", "", f"Table: {tdesc}; seeds {tv['seeds']}. Searched: {spc['description']}; "
                      f"visible seeds drawn from {spc['visible_seeds']} (runs per seed {dict(enumerate(vis))}). "
                      f"Target: {spc['target']}.", "",
                      f"Budgets: {context['budgets'][pair].get('queries')} queries; the time view reads the same runs "
                      f"at {context['time_budgets'][pair]:.0f} simulated s (what random search spends on those "
                      f"queries, median).", "",
                      "| rank | searcher | runs | final regret (pp) mean [95% CI] | median | regret at the time budget "
                      "[95% CI] | found best | queries to final "
                      "| sim. s to final | wall s / run | config |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
            for r in s.iter_rows(named=True):
                lines.append(f"| {r['rank']:g} | {r['searcher']} | {r['runs']} | {r['regret_mean']:.3f} "
                             f"{_ci(r['regret_ci95'])} | {r['regret_median']:.3f} | {r['regret_time_mean']:.3f} "
                             f"{_ci(r['regret_time_ci95'])} | {r['found_best']:.0%} | "
                             f"{r['queries_to_final']:.1f} | {r['seconds_to_final']:.1f} | {r['wall_per_run']:.2f} | "
                             f"`{context['configs'][r['searcher']]['config_id']}` |")
            refs = {}
            for name in ("noise_ceiling", *HANDPICKED):
                if name in ref:
                    x = np.asarray(ref[name], dtype=float)
                    refs[name] = {"runs": len(x), "regret_mean": float(x.mean()),
                                  "regret_ci95": list(stats.bootstrap_ci(x, key=f"{pair}{sc}{name}")), "scoring": sc}
                    lines.append(f"| ref. | *{name.replace('_', ' ')}* | {len(x)} | {x.mean():.3f} "
                                 f"{_ci(refs[name]['regret_ci95'])} | {np.median(x):.3f} | | | | | | |")
            fb = [r for r in s.iter_rows(named=True) if r["fallbacks_max"] > 0]
            if fb:
                lines += ["", "Random fallbacks (asks the method replaced by a random architecture, per run): "
                          + "; ".join(f"{r['searcher']} {r['fallbacks_mean']:.1f} of {r['queries']:.0f} queries "
                                      f"({r['fallback_share']:.0%}, max {r['fallbacks_max']})" for r in fb) + "."]
            if rel:
                lines += ["", f"![anytime regret on {pair} ({sc})]({rel})"]
            lines.append("")
            payload["pairs"].setdefault(pair, []).extend(s.to_dicts())
            payload["references"].setdefault(pair, {})[sc] = refs
    lines += ["## Searcher configurations", "", "| searcher | config id | options | follows the run seed |",
              "|---|---|---|---|"]
    for name, c in context["configs"].items():
        lines.append(f"| {name} | `{c['config_id']}` | `{json.dumps(c['config'], sort_keys=True)}` | "
                     f"{', '.join(c['follows_run']) or '-'} (and its RNG) |")
    lines.append("")
    if shipped is not None:
        rep = reproduces(payload, shipped)
        payload["reproduces"] = rep
        if rep is not None and rep["compared"]:
            lines += ["## Against the shipped leaderboard", "",
                      f"{rep['inside_ci']} of {rep['compared']} shipped mean regrets ({rep['shipped']}) lie inside this "
                      f"run's 95% CIs" + (": it reproduces the shipped leaderboard." if rep["inside_ci"] == rep["compared"]
                                          else "; outside: " + "; ".join(rep["outside"][:10])
                                          + (" ..." if len(rep["outside"]) > 10 else "")), ""]
        elif rep is not None:
            lines += ["## Against the shipped leaderboard", "", f"{rep['shipped']} holds no comparable row "
                      "(an older format).", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=_jsonable))
    return payload


def main(cfg) -> int:
    """The body of ``danas-bench leaderboard`` (``cfg``: the composed ``conf/leaderboard.yaml``)."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    base, user = c.get("base_options") or {}, c.get("options") or {}
    options = {k: {**dict(base.get(k) or {}), **dict(user.get(k) or {})} for k in {*base, *user}}
    frames, timings, context = run_leaderboard(
        c["searchers"], c.get("pairs", "all"), c.get("runs", 20), c.get("budget"), options,
        int(c.get("workers", 1)), bool(c.get("synthetic", False)), c.get("synthetic_options") or {},
        c.get("root"), bool(c.get("progress", True)), c.get("scorings") or ["heldout_seeds", "expected"])
    out = Path(c.get("out", "results/leaderboard.md"))
    shipped = Path(c["compare"]) if c.get("compare") else None
    if shipped is not None and shipped.resolve() == out.with_suffix(".json").resolve():
        shipped = None  # writing the shipped leaderboard itself
    figures = c.get("figures", "results/figures")  # figures=null: no plots
    payload = write_report(frames, timings, context, out, None if figures is None else Path(figures),
                           alpha=float(c.get("alpha", ALPHA)), margin_pp=float(c.get("margin_pp", 0.0)),
                           shipped=shipped)
    if c.get("trajectories"):
        Path(c["trajectories"]).parent.mkdir(parents=True, exist_ok=True)
        frames.write_parquet(c["trajectories"])
    print(f"wrote {out} ({len(context['pairs'])} pairs x {len(context['searchers'])} searchers x "
          f"{len(context['runs'])} runs x {len(context['scorings'])} scorings in {context['wall_seconds']:.0f} s)")
    by: dict = {}
    for r in payload["claims"]:
        by.setdefault((r["claim"], r["scoring"]), []).append(r["holds"])
    for (claim, sc), h in by.items():
        print(f"  {claim} [{sc}]: holds on {sum(h)} / {len(h)} pairs")
    rep = payload.get("reproduces")
    if rep and rep["compared"]:
        print(f"  against {rep['shipped']}: {rep['inside_ci']} / {rep['compared']} shipped means inside this run's CIs")
    return 0


__all__ = ["run_leaderboard", "write_report", "summarize", "finals", "claims", "plot", "main", "config_id",
           "preflight", "PreflightError"]

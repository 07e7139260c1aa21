"""The leaderboard: every searcher on every pair over many seeds, on one budget.

``danas-bench leaderboard`` (config ``conf/leaderboard.yaml``) runs each (pair, searcher) over the
seeds through :func:`danas_bench.search.run`, in ``workers`` processes, and writes

- ``docs/leaderboard.md``: per pair, the mean and spread of the final test regret (percentage points
  of test accuracy against the table's best architecture), the queries and simulated seconds at which
  the final incumbent was found, wall time per run, the table version and the code version, and the
  configuration id of every searcher;
- ``docs/leaderboard.json``: the same numbers, machine-readable;
- ``docs/figures/leaderboard_<dataset>__<teacher>.png``: anytime regret against queries and against
  simulated seconds (mean over seeds, band = standard error).

``run_leaderboard(...)`` is the library entry point; ``synthetic=True`` runs on the synthetic benches
of :mod:`danas_bench.synthetic` (tests, demos, machines without tables).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from . import __version__, tables
from .search import config_id, final, run

# --- opening the pool of benches (in the main process and in every worker) ---------------------------


def open_pool(spec: Mapping) -> dict:
    """``{pair: bench}`` from a pool spec: ``{"synthetic": bool, "root": str|None, "synthetic_options": {...}}``."""
    if spec.get("synthetic"):
        from . import synthetic

        opts = dict(spec.get("synthetic_options") or {})
        datasets = opts.pop("datasets", synthetic.DATASETS[:2])
        teachers = opts.pop("teachers", synthetic.TEACHERS)
        return synthetic.open_all(datasets, teachers, **opts)
    from .bench import open_all

    return open_all(spec.get("root"), fallback=spec.get("fallback", "live"))


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


def seed_list(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        return list(range(int(seeds)))
    return [int(s) for s in seeds]


# --- the worker ------------------------------------------------------------------------------------

_POOL: dict = {}


def _init_worker(spec: Mapping) -> None:
    # one thread per worker process (read by torch when a GP searcher first imports it)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    _POOL.clear()
    _POOL.update(open_pool(spec))


def _task(pair: str, name: str, options: Mapping, seeds: Sequence[int], budget: Mapping) -> tuple[pl.DataFrame, dict]:
    from .baselines import make

    bench = _POOL[pair]
    frames, walls, cpus = [], [], []
    for seed in seeds:
        t, c = time.perf_counter(), time.process_time()
        frames.append(run(make(name, **dict(options)), bench, dict(budget), seed, pool=_POOL))
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return pl.concat(frames, how="vertical"), {"pair": pair, "searcher": name, "wall": walls, "cpu": cpus}


def run_leaderboard(searchers: Sequence[str], pairs="all", seeds=5, budget: Mapping | None = None,
                    options: Mapping | None = None, workers: int = 1, synthetic: bool = False,
                    synthetic_options: Mapping | None = None, root: str | None = None, progress: bool = True,
                    ) -> tuple[pl.DataFrame, list[dict], dict]:
    """Run every searcher on every pair and seed. Returns (all trajectories, per-task timings, context)."""
    from .baselines import ALIASES, searcher_class

    budget = {k: v for k, v in dict(budget or {"queries": 100}).items() if v is not None}
    if not budget:
        raise ValueError("the leaderboard needs a budget: queries and/or seconds")
    options = {k: dict(v) for k, v in dict(options or {}).items()}
    searchers = [ALIASES.get(s, s) for s in searchers]
    for s in searchers:
        searcher_class(s)  # unknown names fail before any work
    spec = {"synthetic": bool(synthetic), "synthetic_options": dict(synthetic_options or {}), "root": root}
    pool = open_pool(spec)
    _POOL.clear()
    _POOL.update(pool)
    pair_list = select_pairs(pool, pairs)
    seeds = seed_list(seeds)
    # slow searchers first, so the pool's workers finish together
    weight = {"dass": 3, "autokd": 3, "trade": 3}
    tasks = sorted(((p, s) for p in pair_list for s in searchers), key=lambda t: -weight.get(t[1], 1))
    results: list[tuple[pl.DataFrame, dict]] = []
    bar = _progress(len(tasks), progress)
    t0 = time.perf_counter()
    if workers <= 1:
        for pair, name in tasks:
            results.append(_task(pair, name, options.get(name, {}), seeds, budget))
            bar(f"{pair} {name}")
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(spec,)) as ex:
            futs = {ex.submit(_task, p, s, options.get(s, {}), seeds, budget): (p, s) for p, s in tasks}
            for f in as_completed(futs):
                results.append(f.result())
                bar(" ".join(futs[f]))
    frames = pl.concat([r[0] for r in results], how="vertical")
    timings = [r[1] for r in results]
    context = {
        "searchers": searchers, "pairs": pair_list, "seeds": seeds, "budget": budget, "options": options,
        "synthetic": bool(synthetic), "wall_seconds": time.perf_counter() - t0, "workers": workers,
        "tables": {p: table_version(pool[p]) for p in pair_list},
        "best": {p: _best(pool[p]) for p in pair_list},
        "handpicked": {p: handpicked(pool[p]) for p in pair_list},
        "code": code_version(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "configs": {s: _searcher_config(s, options.get(s, {})) for s in searchers},
    }
    return frames, timings, context


def _progress(total: int, on: bool):
    if not on:
        return lambda msg: None
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="leaderboard", unit="run", file=sys.stderr)

        def step(msg):
            bar.set_postfix_str(msg)
            bar.update(1)
            if bar.n >= total:
                bar.close()
        return step
    except ImportError:  # pragma: no cover
        done = [0]

        def step(msg):
            done[0] += 1
            print(f"[{done[0]}/{total}] {msg}", file=sys.stderr)
        return step


def _searcher_config(name: str, options: Mapping) -> dict:
    from .baselines import make

    s = make(name, **dict(options))
    return {"config_id": s.config_id(), "config": {k: _jsonable(v) for k, v in s.config.items()}}


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def _best(bench) -> dict:
    arch, value = bench.best("test_acc")
    return {"arch_index": int(arch), "test_acc": float(value)}


# hand-picked students (no search): NAS-Bench-201's ResNet cell and the all-3x3-conv cell
HANDPICKED = {
    "resnet_cell": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "all_conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
}


def handpicked(bench) -> dict:
    """Test regret (pp) of the hand-picked students on ``bench``; missing where the table lacks them."""
    from . import space

    best = float(bench.best("test_acc")[1])
    out, have = {}, set(int(a) for a in bench.archs)
    for name, arch in HANDPICKED.items():
        c = space.canonical(arch)
        if c in have:
            out[name] = 100 * (best - float(bench.test(c)))
    return out


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


# --- summaries, report, plots -----------------------------------------------------------------------


def summarize(frames: pl.DataFrame, timings: list[dict]) -> pl.DataFrame:
    """One row per (pair, searcher): final regret stats and the cost of reaching the final incumbent."""
    rows = []
    wall = {(t["pair"], t["searcher"]): t["wall"] for t in timings}
    cpu = {(t["pair"], t["searcher"]): t.get("cpu", [np.nan]) for t in timings}
    for (pair, name), g in frames.group_by(["pair", "searcher"], maintain_order=True):
        fins = [final(r) for _, r in g.group_by("seed", maintain_order=True)]
        reg = np.array([f["regret"] for f in fins], dtype=float) * 100
        rows.append({
            "pair": pair, "searcher": name, "config_id": g["config_id"][0], "runs": len(fins),
            "regret_mean": float(np.nanmean(reg)), "regret_std": float(np.nanstd(reg)),
            "regret_median": float(np.nanmedian(reg)), "found_best": float(np.mean(reg <= 1e-9)),
            "queries_to_final": float(np.nanmean([f["queries_to_final"] for f in fins])),
            "seconds_to_final": float(np.nanmean([f["seconds_to_final"] for f in fins])),
            "queries": float(np.mean([f["queries"] for f in fins])),
            "seconds": float(np.mean([f["seconds"] for f in fins])),
            "wall_per_run": float(np.mean(wall.get((pair, name), [np.nan]))),
            "cpu_per_run": float(np.mean(cpu.get((pair, name), [np.nan]))),
        })
    df = pl.DataFrame(rows)
    ranks = df.with_columns(pl.col("regret_mean").rank("average").over("pair").alias("rank"))
    return ranks.sort(["pair", "rank"])


def _slug(pair: str) -> str:
    return pair.replace("/", "__")


def plot(frames: pl.DataFrame, pair: str, out: Path, budget: Mapping, order: Sequence[str] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = frames.filter(pl.col("pair") == pair)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    qmax = int(g["cum_queries"].max())
    smax = float(budget.get("seconds") or g["cum_seconds"].max())
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
    axes[0].set_xlabel("queries")
    axes[1].set_xlabel("simulated training seconds")
    axes[0].set_ylabel("test regret of the incumbent (pp)")
    for ax in axes:
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(f"{pair}: anytime regret (mean over seeds, band: standard error)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(frames: pl.DataFrame, timings: list[dict], context: dict, out: Path, figures: Path,
                 command: str = "danas-bench leaderboard") -> dict:
    """Write the Markdown leaderboard, its JSON twin and the plots; return the JSON payload."""
    out, figures = Path(out), Path(figures)
    summary = summarize(frames, timings)
    budget = context["budget"]
    bdesc = " and ".join(f"{v:g} {'queries' if k == 'queries' else 'simulated seconds'}" for k, v in budget.items())
    code = context["code"]
    cdesc = f"danas-bench {code['danas_bench']}" + (f", git {code['git']}" + (" (uncommitted changes)" if code.get(
        "dirty") else "") if "git" in code else "")
    lines = [
        "# Leaderboard", "",
        f"Generated by `{command}` on {context['date']} in {context['wall_seconds']:.0f} s "
        f"({context['workers']} worker{'s' if context['workers'] != 1 else ''}). Code: {cdesc}.",
        "", f"Budget per run: {bdesc}. Seeds: {len(context['seeds'])} per searcher and pair "
        f"({_seed_desc(context['seeds'])}).",
        "",
        "**Regret** is the table's best test accuracy (mean over seeds, `bench.best()`) minus the test accuracy of "
        "the searcher's final incumbent (its best *validation* accuracy at full fidelity; for `evolution` "
        "(NAS-without-KD) the best no-KD validation accuracy, scored with KD), in percentage points; "
        "*found best* is the share of runs whose regret is 0; *queries / sim. s to final* is when the final "
        "incumbent was first queried. Searchers see validation metrics only; test accuracy is read "
        "uncharged, for scoring. Method descriptions: [searchers.md](searchers.md).", "",
    ]
    if context.get("synthetic"):
        lines += ["> **Synthetic benches** (`synthetic=true`): made-up accuracies from `danas_bench.synthetic`, "
                  "not real tables. These numbers test the machinery, not the methods.", ""]
    # overall
    overall = (summary.group_by("searcher").agg(pl.col("regret_mean").mean().alias("mean_regret"),
                                                pl.col("rank").mean().alias("mean_rank"),
                                                pl.col("found_best").mean().alias("found_best"),
                                                pl.col("wall_per_run").mean().alias("wall"))
               .sort("mean_rank"))
    lines += ["## Across pairs", "", "| searcher | mean rank | mean final regret (pp) | found best | wall s / run |",
              "|---|---:|---:|---:|---:|"]
    for r in overall.iter_rows(named=True):
        lines.append(f"| {r['searcher']} | {r['mean_rank']:.2f} | {r['mean_regret']:.3f} | "
                     f"{r['found_best']:.0%} | {r['wall']:.2f} |")
    lines.append("")
    payload = {"context": context, "pairs": {}}
    for pair in context["pairs"]:
        tv = context["tables"][pair]
        best = context["best"][pair]
        s = summary.filter(pl.col("pair") == pair)
        fig = figures / f"leaderboard_{_slug(pair)}.png"
        plot(frames, pair, fig, budget, context["searchers"])
        tdesc = ", ".join(f"{k} {v}" for k, v in tv.items() if k not in ("seeds",))
        lines += [f"## {pair}", "", f"Table: {tdesc}; seeds {tv['seeds']}. Best architecture {best['arch_index']} "
                  f"(test accuracy {best['test_acc']:.4f}).", "",
                  "| rank | searcher | final regret (pp) mean ± std | median | found best | queries to final | "
                  "sim. s to final | wall s / run | config |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in s.iter_rows(named=True):
            lines.append(f"| {r['rank']:g} | {r['searcher']} | {r['regret_mean']:.3f} ± {r['regret_std']:.3f} | "
                         f"{r['regret_median']:.3f} | {r['found_best']:.0%} | {r['queries_to_final']:.1f} | "
                         f"{r['seconds_to_final']:.1f} | {r['wall_per_run']:.2f} | `{r['config_id']}` |")
        rel = os.path.relpath(fig, out.parent)
        lines += ["", f"![anytime regret on {pair}]({rel})", ""]
        payload["pairs"][pair] = s.to_dicts()
    crows = claims(frames, summary, context)
    if crows:
        lines += ["## The papers' claims on these runs", "",
                  "Lower is better in both columns; *holds* means the method's number is better by more than the "
                  "combined standard error of the two means over seeds (AutoKD: simply lower). "
                  "See [searchers.md](searchers.md) for what each claim means here.", "",
                  "| claim | pair | measure | method | comparison | holds |", "|---|---|---|---:|---:|---|"]
        for r in crows:
            lines.append(f"| {r['claim']} | {r['pair']} | {r['measure']} | {r['ours']:.3f} | {r['theirs']:.3f} | "
                         f"{'yes' if r['holds'] else 'no'} |")
        by = {}
        for r in crows:
            by.setdefault(r["claim"], []).append(r["holds"])
        lines += ["", "| claim | holds on |", "|---|---:|"]
        lines += [f"| {c} | {sum(h)} / {len(h)} pairs |" for c, h in by.items()]
        lines.append("")
    payload["claims"] = crows
    lines += ["## Searcher configurations", "", "| searcher | config id | options |", "|---|---|---|"]
    for name, c in context["configs"].items():
        lines.append(f"| {name} | `{c['config_id']}` | `{json.dumps(c['config'], sort_keys=True)}` |")
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=_jsonable))
    return payload


def _anytime(frames: pl.DataFrame, pair: str, name: str, upto: int) -> float:
    """Mean over seeds of the mean regret (pp) over queries 1..upto (lower: found good students sooner)."""
    g = frames.filter((pl.col("pair") == pair) & (pl.col("searcher") == name) & (pl.col("cum_queries") <= upto))
    if g.height == 0:
        return float("nan")
    per = g.group_by("seed").agg((pl.col("regret").fill_null(strategy="backward").mean() * 100).alias("a"))
    return float(per["a"].mean())


def claims(frames: pl.DataFrame, summary: pl.DataFrame, context: dict) -> list[dict]:
    """The papers' headline claims, checked pair by pair on this leaderboard's runs.

    Each row: claim, pair, the two numbers compared (lower is better), and whether it holds here
    (the difference exceeds the combined standard error of the two means).
    """
    rows = []
    n = len(context["seeds"])
    stat = {(r["pair"], r["searcher"]): r for r in summary.iter_rows(named=True)}
    q = int(context["budget"].get("queries") or frames["cum_queries"].max())

    def final_cmp(claim, pair, a, b):
        if (pair, a) in stat and (pair, b) in stat:
            ra, rb = stat[(pair, a)], stat[(pair, b)]
            se = np.hypot(ra["regret_std"], rb["regret_std"]) / np.sqrt(max(n, 1))
            rows.append({"claim": claim, "pair": pair, "ours": ra["regret_mean"], "theirs": rb["regret_mean"],
                         "measure": f"final regret (pp), {a} vs {b}",
                         "holds": bool(rb["regret_mean"] - ra["regret_mean"] > se)})

    for pair in context["pairs"]:
        teacher = pair.split("/")[1]
        if teacher != "none":  # on a `none` pair there is no KD, so NAS-then-KD is the same problem
            final_cmp("AKD: KD-guided search beats NAS-then-KD", pair, "akd", "evolution")
            final_cmp("TRADE: beats conventional NAS (NAS-then-KD)", pair, "trade", "evolution")
        if (pair, "trade") in stat:
            for hp, reg in context["handpicked"].get(pair, {}).items():
                ours = stat[(pair, "trade")]["regret_mean"]
                rows.append({"claim": f"TRADE: beats a hand-picked student ({hp})", "pair": pair, "ours": ours,
                             "theirs": reg, "measure": "final regret (pp), trade vs the fixed student",
                             "holds": bool(reg - ours > stat[(pair, "trade")]["regret_std"] / np.sqrt(max(n, 1)))})
        final_cmp("DaSS: a predictor meta-trained on other pairs transfers to this unseen pair", pair, "dass", "random")
        for other in ("random", "trade"):
            if any(s == "autokd" for s in context["searchers"]) and other in context["searchers"]:
                a, b = _anytime(frames, pair, "autokd", q // 4), _anytime(frames, pair, other, q // 4)
                rows.append({"claim": f"AutoKD: sample efficiency (vs {other})", "pair": pair, "ours": a, "theirs": b,
                             "measure": f"mean regret (pp) over the first {q // 4} queries",
                             "holds": bool(b > a)})
    return rows


def _seed_desc(seeds: list[int]) -> str:
    if seeds == list(range(len(seeds))):
        return f"0..{len(seeds) - 1}"
    return ", ".join(map(str, seeds))


def main(cfg) -> int:
    """The body of ``danas-bench leaderboard`` (``cfg``: the composed ``conf/leaderboard.yaml``)."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    frames, timings, context = run_leaderboard(
        c["searchers"], c.get("pairs", "all"), c.get("seeds", 5), c.get("budget"), c.get("options") or {},
        int(c.get("workers", 1)), bool(c.get("synthetic", False)), c.get("synthetic_options") or {},
        c.get("root"), bool(c.get("progress", True)))
    out = Path(c.get("out", "docs/leaderboard.md"))
    write_report(frames, timings, context, out, Path(c.get("figures", "docs/figures")))
    if c.get("trajectories"):
        Path(c["trajectories"]).parent.mkdir(parents=True, exist_ok=True)
        frames.write_parquet(c["trajectories"])
    summary = summarize(frames, timings)
    print(f"wrote {out} ({len(context['pairs'])} pairs x {len(context['searchers'])} searchers x "
          f"{len(context['seeds'])} seeds in {context['wall_seconds']:.0f} s)")
    for pair in context["pairs"]:
        best = summary.filter(pl.col("pair") == pair).row(0, named=True)
        print(f"  {pair}: best {best['searcher']} (regret {best['regret_mean']:.3f} pp)")
    return 0


__all__ = ["run_leaderboard", "write_report", "summarize", "plot", "main", "config_id"]

"""The leaderboard written out: the Markdown report, its JSON twin and the anytime-regret plots.

:func:`write_report` takes what :func:`danas_bench.reports.leaderboard.run_leaderboard` returns, scores
it with :mod:`danas_bench.reports.leaderboard_claims` and renders it; nothing here runs a searcher.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from danas_bench.core import stats
from danas_bench.core.pairs import Pair
from danas_bench.reports.leaderboard_claims import ALPHA, HANDPICKED, claims, finals, reproduces, summarize


def jsonable(v):
    """``v`` as JSON can hold it: numpy scalars as Python numbers, mappings and sequences recursively,
    anything else as its ``repr``."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return repr(v)


def plot(
    frames: pl.DataFrame,
    pair: str,
    scoring: str,
    out: Path,
    order: Sequence[str] | None = None,
    ceiling: float | None = None,
) -> Path:
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


def _detectable(v: float) -> str:
    return "-" if math.isnan(v) else "none" if math.isinf(v) else f"{v:.2f}"


def _pair_queries(budgets: Mapping[str, Mapping[str, dict]]) -> list[str]:
    """``budgets[scoring][pair]`` as one phrase per pair: its query cap, per scoring where they differ
    (held-out scoring searches only the cells with another recorded seed, so ``max_share`` may cap it lower)."""
    out = []
    for pair in sorted({p for per in budgets.values() for p in per}):
        q = {sc: per[pair].get("queries", "-") for sc, per in budgets.items() if pair in per}
        same = len(set(map(str, q.values()))) == 1
        out.append(
            f"{pair} "
            + (f"{next(iter(q.values()))}" if same else ", ".join(f"{v} ({sc})" for sc, v in q.items()))
            + " queries"
        )
    return out


def write_report(
    frames: pl.DataFrame,
    timings: list[dict],
    context: dict,
    out: Path,
    figures: Path,
    command: str = "danas-bench leaderboard",
    alpha: float = ALPHA,
    margin_pp: float = 0.0,
    shipped: Path | list[Path] | None = None,
) -> dict:
    """Write the Markdown leaderboard, its JSON twin and the plots; return the JSON payload."""
    out, figures = Path(out), None if figures is None else Path(figures)
    fin = finals(frames, context)
    summary = summarize(fin, timings)
    crows = claims(fin, context, alpha, margin_pp)
    budget = context["budget"]
    code = context["code"]
    cdesc = f"danas-bench {code['danas_bench']}" + (
        f", git {code['git']}" + (" (uncommitted changes)" if code.get("dirty") else "") if "git" in code else ""
    )
    n = len(context["runs"])
    bdesc = ", ".join(f"{k} {v}" if isinstance(v, bool) else f"{k} {v:g}" for k, v in budget.items())
    lines = [
        "# Leaderboard",
        "",
        f"Generated by `{command}` on {context['date']} in {context['wall_seconds']:.0f} s "
        f"({context['workers']} worker{'s' if context['workers'] != 1 else ''}). Code: {cdesc}.",
        "",
        f"**Protocol.** {n} matched runs per (searcher, pair, scoring). Run *r* searches one *visible* seed, drawn "
        "from *r* alone (the same for every searcher), and sees its validation accuracy only; its final "
        "incumbent (best visible validation accuracy) is scored by the **target**, which never reads the visible "
        "seed: `heldout_seeds` = mean test accuracy over the architecture's other recorded seeds; `expected` = the "
        "expected-accuracy view (cross-fitted estimate of the seed mean). **Regret** = the target's best "
        "architecture in the searched space minus the incumbent's target value, in percentage points. The "
        "searcher's RNG and every other stochastic part (DaSS's meta seed) follow the run index. Scores read the "
        "shipped table rows only, never the live overlay.",
        "",
        f"**Budget** ({bdesc}): per run, queries capped at `max_share` of the searched space; a query costs a "
        "deterministic simulated time per architecture (a fit of the pair's recorded seconds on the "
        "architecture's FLOPs, the same in every run), shown on the right-hand axis of each plot"
        + (
            "; a query at epoch e of E (AutoKD's Hyperband rungs) costs e/E of a query and of that time"
            if budget.get("fractional_queries")
            else ""
        )
        + ". Per pair: "
        + "; ".join(_pair_queries(context["budgets"]))
        + ".",
        "",
        f"**Statistics.** Mean regret with a 95% percentile-bootstrap CI over runs. A claim is a one-sided paired "
        f"sign-flip permutation test over the matched runs (H0: the method's mean gain <= {margin_pp:g} pp), "
        f"Holm-corrected across the pairs it is tested on; it **holds** only at p_holm < {alpha:g} with a mean gain "
        f"above {margin_pp:g} pp. Reference lines: `random` (a searcher), the **noise ceiling** (the visible seed's "
        "best validation accuracy over the whole searched space, scored on the target: what a perfect searcher of "
        "the visible signal reaches) and hand-picked students. Matched controls: `evolution_kd` (evolution on the "
        "KD table) and `random_none` (random search on `none`), so that KD-aware vs NAS-then-KD compares the signal "
        "searched on, not the algorithm. Method descriptions and departures from the papers: "
        "[searchers.md](searchers.md).",
        "",
    ]
    if context.get("synthetic"):
        lines += [
            "> **Synthetic benches** (`synthetic=true`): made-up accuracies from `danas_bench.search.synthetic`, "
            "not real tables. These numbers test the machinery, not the methods.",
            "",
        ]
    for note in context.get("notes", {}).values():
        lines += [f"> **Note:** {note}", ""]
    payload: dict = {"context": context, "pairs": {}, "references": {}, "claims": crows}
    # claims first: what users cite
    if crows:
        lines += [
            "## Claims",
            "",
            "| claim | scoring | holds on | pairs where it holds (gain pp, p_holm) |",
            "|---|---|---:|---|",
        ]
        seen = []
        for r in crows:
            k = (r["claim"], r["scoring"])
            if k not in seen:
                seen.append(k)
        for c, sc in seen:
            rs = [r for r in crows if r["claim"] == c and r["scoring"] == sc]
            held = [f"{r['pair']} ({r['diff_mean']:+.2f}, {_p(r['p_holm'])})" for r in rs if r["holds"]]
            lines.append(f"| {c} | {sc} | {sum(r['holds'] for r in rs)} / {len(rs)} | {', '.join(held) or '-'} |")
        lines += [
            "",
            "Every test, per pair (gain = baseline's measure minus the method's; > 0: the method is better):",
            "",
            "| claim | scoring | pair | measure | method | baseline | gain [95% CI] | p | p_holm | holds | "
            "detectable gain (pp) |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for r in crows:
            lines.append(
                f"| {r['claim']} | {r['scoring']} | {r['pair']} | {r['measure']} | {r['method_mean']:.2f} | "
                f"{r['baseline_mean']:.2f} | {r['diff_mean']:+.2f} {_ci(r['diff_ci95'])} | {_p(r['p'])} | "
                f"{_p(r['p_holm'])} | {'yes' if r['holds'] else 'no'} | {_detectable(r['detectable'])} |"
            )
        lines += [
            "",
            "Detectable gain: the smallest true mean gain these matched runs would show with 80% power at Holm's "
            "strictest level (alpha / pairs tested), from the spread of the per-run differences (t approximation). "
            "Where a claim does not hold, these runs cannot tell a gain below it from none with 80% power; about four "
            "times the runs halve it. A normal-theory approximation for a test chosen because regrets are not normal: "
            "a guide to the runs needed, not an exact power. none: too few runs for the test to reject at that "
            "level; -: the runs do not differ.",
        ]
        lines.append("")
    for sc in context["scorings"]:
        s_sc = summary.filter(pl.col("scoring") == sc)
        overall = (
            s_sc.group_by("searcher")
            .agg(
                pl.col("regret_mean").mean().alias("mean_regret"),
                pl.col("rank").mean().alias("mean_rank"),
                pl.col("wall_per_run").mean().alias("wall"),
            )
            .sort(["mean_rank", "searcher"])
        )  # ties in name order: group_by has no order
        ceil = np.mean([np.mean(context["references"][sc][p]["noise_ceiling"]) for p in context["scoring_pairs"][sc]])
        lines += [
            f"## Across pairs: `{sc}`",
            "",
            "| searcher | mean rank | mean final regret (pp) | wall s / run |",
            "|---|---:|---:|---:|",
        ]
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
                fig = figures / f"leaderboard_{Pair.parse(pair, check=False).slug}__{sc}.png"
                plot(frames, pair, sc, fig, context["searchers"], float(np.mean(ref["noise_ceiling"])))
                rel = os.path.relpath(fig, out.parent)
            tdesc = ", ".join(f"{k} {v}" for k, v in tv.items() if k not in ("seeds",))
            vis = np.bincount(ref["visible_seed"]).tolist()
            lines += [
                f"### {pair} (`{sc}`)",
                "",
                f"Table: {tdesc}; seeds {tv['seeds']}. Searched: {spc['description']}; "
                f"visible seeds drawn from {spc['visible_seeds']} (runs per seed {dict(enumerate(vis))}). "
                f"Target: {spc['target']}.",
                "",
                f"Budgets: {context['budgets'][sc][pair].get('queries')} queries; the time view reads the same runs "
                f"at {context['time_budgets'][sc][pair]:.0f} simulated s (what random search spends on those "
                f"queries, median).",
                "",
                "| rank | searcher | runs | final regret (pp) mean [95% CI] | median | regret at the time budget "
                "[95% CI] | found best | queries to final "
                "| sim. s to final | wall s / run | config |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            for r in s.iter_rows(named=True):
                lines.append(
                    f"| {r['rank']:g} | {r['searcher']} | {r['runs']} | {r['regret_mean']:.3f} "
                    f"{_ci(r['regret_ci95'])} | {r['regret_median']:.3f} | {r['regret_time_mean']:.3f} "
                    f"{_ci(r['regret_time_ci95'])} | {r['found_best']:.0%} | "
                    f"{r['queries_to_final']:.1f} | {r['seconds_to_final']:.1f} | {r['wall_per_run']:.2f} | "
                    f"`{context['configs'][r['searcher']]['config_id']}` |"
                )
            refs = {}
            for name in ("noise_ceiling", *HANDPICKED):
                if name in ref:
                    x = np.asarray(ref[name], dtype=float)
                    refs[name] = {
                        "runs": len(x),
                        "regret_mean": float(x.mean()),
                        "regret_ci95": list(stats.bootstrap_ci(x, key=f"{pair}{sc}{name}")),
                        "scoring": sc,
                    }
                    lines.append(
                        f"| ref. | *{name.replace('_', ' ')}* | {len(x)} | {x.mean():.3f} "
                        f"{_ci(refs[name]['regret_ci95'])} | {np.median(x):.3f} | | | | | | |"
                    )
            fb = [r for r in s.iter_rows(named=True) if r["fallbacks_max"] > 0]
            if fb:
                lines += [
                    "",
                    "Random fallbacks (asks the method replaced by a random architecture, per run): "
                    + "; ".join(
                        f"{r['searcher']} {r['fallbacks_mean']:.1f} of {r['queries']:.0f} queries "
                        f"({r['fallback_share']:.0%}, max {r['fallbacks_max']})"
                        for r in fb
                    )
                    + ".",
                ]
            if rel:
                lines += ["", f"![anytime regret on {pair} ({sc})]({rel})"]
            lines.append("")
            payload["pairs"].setdefault(pair, []).extend(s.to_dicts())
            payload["references"].setdefault(pair, {})[sc] = refs
    lines += [
        "## Searcher configurations",
        "",
        "| searcher | config id | options | follows the run seed |",
        "|---|---|---|---|",
    ]
    for name, c in context["configs"].items():
        lines.append(
            f"| {name} | `{c['config_id']}` | `{json.dumps(c['config'], sort_keys=True)}` | "
            f"{', '.join(c['follows_run']) or '-'} (and its RNG) |"
        )
    lines.append("")
    if shipped is not None:
        rep = reproduces(payload, shipped)
        payload["reproduces"] = rep
        if rep is not None and rep["compared"]:
            lines += [
                "## Against the shipped leaderboard",
                "",
                f"{rep['inside_ci']} of {rep['compared']} shipped mean regrets ({rep['shipped']}) lie inside "
                f"this run's 95% CIs"
                + (
                    ": it reproduces the shipped leaderboard."
                    if rep["inside_ci"] == rep["compared"]
                    else "; outside: " + "; ".join(rep["outside"][:10]) + (" ..." if len(rep["outside"]) > 10 else "")
                ),
                "",
            ]
        elif rep is not None:
            lines += [
                "## Against the shipped leaderboard",
                "",
                f"{rep['shipped']} holds no row on the same tables (its pairs ran on another recipe, or it is an "
                "older format).",
                "",
            ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=jsonable))
    return payload


__all__ = ["write_report", "plot", "jsonable"]

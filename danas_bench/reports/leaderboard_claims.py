"""The leaderboard's statistics: what each run scored, the summaries per searcher, and the claims tested.

:mod:`danas_bench.reports.leaderboard` runs the matched runs and hands over their trajectories and
context; here they become one row per run (:func:`finals`), one row per (pair, scoring, searcher)
with bootstrap CIs (:func:`summarize`), and the claims (:func:`claim_specs`, :func:`claims`): one-sided
paired sign-flip tests over the matched runs, Holm-corrected across pairs. The baselines a claim may
compare against are defined here too: the matched controls (:data:`CONTROLS`) and the hand-picked
students (:data:`HANDPICKED`). :mod:`danas_bench.reports.leaderboard_report` writes it all out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from danas_bench.core import stats
from danas_bench.core.pairs import Pair
from danas_bench.search.runner import final

ALPHA = stats.ALPHA

CONTROLS = {"evolution_kd", "random_none"}  # on a `none` pair they are evolution and random themselves

# hand-picked students (no search): NAS-Bench-201's ResNet cell and the all-3x3-conv cell
HANDPICKED = {
    "resnet_cell": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "all_conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
}


def time_budgets(frames: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Per scoring and pair (``out[scoring][pair]``), the simulated-time budget of the time view: the median
    simulated seconds random search spends on that scoring's query budget (the expected cost of that many
    uniform draws; every searcher's cost per architecture is the same deterministic one), or the median
    over all its runs without random search."""
    out: dict[str, dict[str, float]] = {}
    for (pair, sc), g in frames.group_by(["pair", "scoring"], maintain_order=True):
        spent = g.group_by(["searcher", "seed"]).agg(pl.col("cum_seconds").max())
        rnd = spent.filter(pl.col("searcher") == "random")
        out.setdefault(sc, {})[pair] = float((rnd if rnd.height else spent)["cum_seconds"].median())
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
        q = int(context["budgets"][sc][pair].get("queries") or g["cum_queries"].max())
        early = g.filter(pl.col("cum_queries") <= max(q // 4, 1))
        # before a run's first full-epoch answer (AutoKD's low-epoch rungs) it has no incumbent: those
        # queries count as a uniformly random pick (its expected regret on this run's target)
        blind = dict(
            zip(context["runs"], context.get("references", {}).get(sc, {}).get(pair, {}).get("uniform_pick", []))
        )
        reg = early["regret"] * 100
        reg = reg.fill_null(blind[int(r)]) if int(r) in blind else reg.fill_null(strategy="backward")
        anytime = float(reg.mean()) if early.height and reg.null_count() < early.height else np.nan
        rows.append(
            {
                "pair": pair,
                "scoring": sc,
                "searcher": name,
                "run": int(r),
                "visible_seed": int(g["visible_seed"][0]),
                "regret": 100 * float(f["regret"]),
                "anytime": anytime,
                "regret_time": _regret_at(g, tbud[sc][pair], blind.get(int(r))),
                "queries_to_final": f["queries_to_final"],
                "seconds_to_final": f["seconds_to_final"],
                "queries": f["queries"],
                "seconds": f["seconds"],
                "fallbacks": int(g["fallbacks"][0]) if "fallbacks" in g.columns and g.height else 0,
            }
        )
    return pl.DataFrame(rows).sort(["pair", "scoring", "searcher", "run"])


def summarize(fin: pl.DataFrame, timings: list[dict]) -> pl.DataFrame:
    """One row per (pair, scoring, searcher): mean regret with its 95% bootstrap CI, and the costs."""
    wall = {(t["pair"], t["scoring"], t["searcher"]): t for t in timings}
    rows = []
    for (pair, sc, name), g in fin.group_by(["pair", "scoring", "searcher"], maintain_order=True):
        reg = g["regret"].to_numpy()
        t = wall.get((pair, sc, name), {})
        rows.append(
            {
                "pair": pair,
                "scoring": sc,
                "searcher": name,
                "runs": len(reg),
                "regret_mean": float(np.mean(reg)),
                "regret_ci95": list(stats.bootstrap_ci(reg, key=f"{pair}{sc}{name}")),
                "regret_median": float(np.median(reg)),
                "found_best": float(np.mean(reg <= 1e-9)),
                # the same runs under the pair's simulated-time budget (context["time_budgets"])
                "regret_time_mean": float(np.nanmean(g["regret_time"].to_numpy())),
                "regret_time_ci95": list(
                    stats.bootstrap_ci(g["regret_time"].drop_nans().to_numpy(), key=f"{pair}{sc}{name}time")
                ),
                "queries_to_final": float(g["queries_to_final"].mean()),
                "seconds_to_final": float(g["seconds_to_final"].mean()),
                "queries": float(g["queries"].mean()),
                "seconds": float(g["seconds"].mean()),
                # random fallbacks per run (asks the method replaced by a random architecture) and their share
                "fallbacks_mean": float(g["fallbacks"].mean()),
                "fallbacks_max": int(g["fallbacks"].max()),
                "fallback_share": float(g["fallbacks"].sum() / max(g["queries"].sum(), 1)),
                "wall_per_run": float(np.mean(t.get("wall", [np.nan]))),
                "cpu_per_run": float(np.mean(t.get("cpu", [np.nan]))),
            }
        )
    df = pl.DataFrame(rows)
    return df.with_columns(pl.col("regret_mean").rank("average").over(["pair", "scoring"]).alias("rank")).sort(
        ["scoring", "pair", "rank"]
    )


def claim_specs(context: dict) -> list[dict]:
    """The claims tested: (method, baseline, measure, pairs). Lower regret is better in every measure."""
    have = set(context["searchers"])
    kd = lambda p: Pair.parse(p, check=False).kd  # noqa: E731 - NAS-then-KD is the same problem on `none`
    every = lambda p: True  # noqa: E731
    specs = [
        ("AKD: KD-guided search beats NAS-then-KD", "akd", "evolution", "regret", kd),
        ("TRADE: beats conventional NAS (NAS-then-KD)", "trade", "evolution", "regret", kd),
        (
            "control: the KD signal beats the no-KD signal (evolution on KD vs on none)",
            "evolution_kd",
            "evolution",
            "regret",
            kd,
        ),
        (
            "control: the KD signal beats the no-KD signal (random on KD vs on none)",
            "random",
            "random_none",
            "regret",
            kd,
        ),
        ("AKD beats evolution on the same KD table (algorithm only)", "akd", "evolution_kd", "regret", kd),
        ("TRADE beats evolution on the same KD table (algorithm only)", "trade", "evolution_kd", "regret", kd),
        (
            "DaSS: a predictor meta-trained on other datasets transfers (beats random)",
            "dass",
            "random",
            "regret",
            every,
        ),
        (
            "DaSS: querying students (this adaptation) beats the paper's top-1 pick",
            "dass",
            "dass_paper",
            "regret",
            every,
        ),
        ("AutoKD: sample efficiency (vs random)", "autokd", "random", "anytime", every),
        ("AutoKD: sample efficiency (vs trade)", "autokd", "trade", "anytime", every),
    ]
    out = [
        {"claim": c, "method": a, "baseline": b, "measure": m, "pairs": f}
        for c, a, b, m, f in specs
        if a in have and b in have
    ]
    for name in context["searchers"]:
        if name != "random" and name not in CONTROLS and "random" in have:
            out.append(
                {
                    "claim": f"{name} beats random search",
                    "method": name,
                    "baseline": "random",
                    "measure": "regret",
                    "pairs": every,
                }
            )
    if "trade" in have:
        for hp in HANDPICKED:
            out.append(
                {
                    "claim": f"TRADE: beats a hand-picked student ({hp})",
                    "method": "trade",
                    "baseline": hp,
                    "measure": "regret",
                    "pairs": every,
                }
            )
    return out


MEASURES = {
    "regret": "final regret (pp)",
    "anytime": "mean regret over the first quarter of the query budget (pp; before the first full-epoch "
    "answer: a uniformly random pick's)",
}


def claims(fin: pl.DataFrame, context: dict, alpha: float = ALPHA, margin_pp: float = 0.0) -> list[dict]:
    """Every claim, per scoring and pair: paired one-sided test over matched runs, Holm across pairs.

    Row fields: claim, scoring, pair, method, baseline, measure, runs, method_mean, baseline_mean,
    diff_mean (baseline minus method: > 0 means the method is better), diff_ci95, p, p_holm, holds
    (p_holm < alpha and diff_mean > margin_pp), threshold, detectable (the mean gain these runs detect with
    80% power at alpha / pairs tested: where a claim fails, its runs cannot tell a gain below it from none).
    """
    out = []
    threshold = f"one-sided paired sign-flip test, Holm across pairs, p_holm < {alpha:g}; mean gain > {margin_pp:g} pp"
    for spec in claim_specs(context):
        for sc in context["scorings"]:
            rows = []
            for pair in context["scoring_pairs"][sc]:
                if not spec["pairs"](pair):
                    continue
                a = fin.filter(
                    (pl.col("pair") == pair) & (pl.col("scoring") == sc) & (pl.col("searcher") == spec["method"])
                )
                if a.height == 0:
                    continue
                ref = context["references"][sc][pair]
                if spec["baseline"] in HANDPICKED:
                    if spec["baseline"] not in ref:
                        continue
                    b = pl.DataFrame({"run": context["runs"], "b": ref[spec["baseline"]]})
                else:
                    b = fin.filter(
                        (pl.col("pair") == pair) & (pl.col("scoring") == sc) & (pl.col("searcher") == spec["baseline"])
                    ).select("run", pl.col(spec["measure"]).alias("b"))
                    if b.height == 0:
                        continue
                m = a.select("run", pl.col(spec["measure"]).alias("a")).join(b, on="run", how="inner")
                d = (m["b"] - m["a"]).to_numpy()
                key = f"{spec['claim']}|{sc}|{pair}"
                rows.append(
                    {
                        "claim": spec["claim"],
                        "scoring": sc,
                        "pair": pair,
                        "method": spec["method"],
                        "baseline": spec["baseline"],
                        "measure": MEASURES[spec["measure"]],
                        "runs": len(d),
                        "method_mean": float(m["a"].mean()),
                        "baseline_mean": float(m["b"].mean()),
                        "diff_mean": float(np.mean(d)),
                        "diff_ci95": list(stats.bootstrap_ci(d, key=key)),
                        "p": stats.paired_test(d, margin_pp, key=key),
                        "threshold": threshold,
                        "_diff": d,
                    }
                )
            for r, ph in zip(rows, stats.holm([r["p"] for r in rows])):
                r["p_holm"] = float(ph)
                r["holds"] = bool(ph < alpha and r["diff_mean"] > margin_pp)
                # at Holm's strictest step (alpha / pairs tested): what these runs could have shown
                r["detectable"] = margin_pp + stats.detectable_gain(r.pop("_diff"), alpha / len(rows))
            out += rows
    return out


def reproduces(payload: dict, shipped) -> dict | None:
    """How many of the shipped leaderboards' (pair, scoring, searcher) means fall inside this run's 95% CIs.
    ``shipped``: one leaderboard JSON or several (the v1 board and the v2 board); a row is compared with the
    board that ran its pair on the same recipe (a v2 run is not a reproduction of v1). None: none readable."""
    paths = [Path(shipped)] if isinstance(shipped, (str, Path)) else [Path(p) for p in shipped]
    recipe = lambda d, p: ((d.get("context") or {}).get("tables") or {}).get(p, {}).get("recipe_id")  # noqa: E731
    theirs, read = {}, []
    for path in paths:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        read.append(str(path))
        for rows in (old.get("pairs") or {}).values():
            for r in rows if isinstance(rows, list) else []:
                key = (r.get("pair"), recipe(old, r.get("pair")), r.get("scoring"), r.get("searcher"))
                theirs.setdefault(key, r.get("regret_mean"))
    if not read:
        return None
    inside, total, off = 0, 0, []
    for rows in payload["pairs"].values():
        for r in rows:
            v = theirs.get((r["pair"], recipe(payload, r["pair"]), r["scoring"], r["searcher"]))
            if v is None:
                continue
            total += 1
            lo, hi = r["regret_ci95"]
            if lo - 1e-9 <= v <= hi + 1e-9:
                inside += 1
            else:
                off.append(f"{r['pair']} {r['searcher']} ({r['scoring']}): shipped {v:.3f}, here [{lo:.3f}, {hi:.3f}]")
    return {"shipped": ", ".join(read), "compared": total, "inside_ci": inside, "outside": off}


__all__ = [
    "ALPHA",
    "CONTROLS",
    "HANDPICKED",
    "MEASURES",
    "time_budgets",
    "finals",
    "summarize",
    "claim_specs",
    "claims",
    "reproduces",
]

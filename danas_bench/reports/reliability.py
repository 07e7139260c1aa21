"""How much of a table is the architecture and how much is seed luck: the figures the recipe search
chooses by (``danas-bench pilot``) and the datasheet reports per shipped table (v1 next to v2).

All figures use the non-zero cells recorded with every seed used (a zero cell is a constant classifier
whose accuracy is the same for every seed and would inflate every agreement figure; its flat curve
would pass for convergence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from danas_bench.core import space
from danas_bench.core.pairs import RETIRED, split_pair


@dataclass(frozen=True)
class Criteria:
    """The recipe search's thresholds (``danas-bench pilot``), which the v2 targets also read."""

    max_late_gain: float = 0.01  # converged: last quarter of epochs adds < 1 pp (median curve)
    max_collapsed: float = 0.02  # share of KD runs > 5 pp below the same cell's no-KD run
    collapse_gap: float = 0.05
    min_teacher_margin: float = 0.02  # teacher test acc - best seed-mean student
    near_best_icc: float = 0.02  # candidates this close to the best ICC are ranked by top-10% percentile
    # a partly measured candidate whose runs so far cost this x the cap cannot be chosen (one candidate's KD
    # settings differ by at most 11% in core-seconds per training on fashion-mnist's measured candidates)
    partial_cost_margin: float = 1.25


def mean_squares(a: np.ndarray) -> tuple[float, float]:
    """The one-way ANOVA's between-cell and within-cell mean squares of an (n cells, k seeds) array."""
    n, k = a.shape
    msb = k * ((a.mean(1) - a.mean()) ** 2).sum() / (n - 1)
    msw = ((a - a.mean(1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    return msb, msw


def icc1(a: np.ndarray) -> tuple[float, float]:
    """One-way random-effects ICC(1) and ICC(k) of an (n cells, k seeds) array: the share of a single
    run's (and of the k-seed mean's) variance that is the cell's."""
    k = a.shape[1]
    msb, msw = mean_squares(a)
    return float((msb - msw) / (msb + (k - 1) * msw)), float((msb - msw) / msb) if msb > 0 else float("nan")


def icc1_ci(a: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of ICC(1) from the F distribution of MSB / MSW under the one-way model (Shrout
    and Fleiss 1979): on 48 cells x 2 seeds it is about +-0.2 wide, which is what two candidates' ICCs
    must differ by before a recipe search may call one more reliable."""
    n, k = a.shape
    msb, msw = mean_squares(a)
    if msw <= 0:
        return 1.0, 1.0
    f, q = msb / msw, 1 - (1 - level) / 2
    lo = f / stats.f.ppf(q, n - 1, n * (k - 1))
    hi = f * stats.f.ppf(q, n * (k - 1), n - 1)
    return float((lo - 1) / (lo + k - 1)), float((hi - 1) / (hi + k - 1))


def top_heldout_percentile(pick: np.ndarray, score: np.ndarray, top: float = 0.1) -> float:
    """Mean percentile, under ``score``, of the top ``top`` share of cells by ``pick`` (100 = best;
    a perfect pick of the top 10% scores ~95, chance 50)."""
    n = len(pick)
    m = max(1, int(round(top * n)))
    chosen = np.argsort(-pick, kind="stable")[:m]
    pct = stats.rankdata(score) / n * 100
    return float(pct[chosen].mean())


def best_heldout(pick: np.ndarray, score: np.ndarray) -> float:
    """The best student's accuracy without selection bias: for each seed, the cell whose mean ``pick``
    over the other seeds is highest, scored by that seed's ``score``; averaged over seeds. The best seed
    mean over thousands of cells is the maximum of noisy means, so it overstates the best student; this
    scores the picked cell without bias, but the pick is not always the best cell, so it understates it:
    the best student lies between the two."""
    k = pick.shape[1]
    picked = [int(np.argmax(np.delete(pick, s, axis=1).mean(1))) for s in range(k)]
    return float(np.mean([score[i, s] for s, i in enumerate(picked)]))


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% t-interval."""
    m = float(x.mean())
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - h, m + h


def late_gain(curves) -> float:
    """Gain of the median validation curve over its last quarter of epochs (converged: < 1 pp). Rounded to
    1e-6: curves are float32 shares of a few hundred examples, so 3/300 reads 0.0099999905 and would pass
    for less than 1 pp."""
    med = np.median(np.asarray(curves, dtype=np.float64), axis=0)
    e = len(med)
    return round(float(med[-1] - med[e - max(1, e // 4) - 1]), 6)


def multi_seed(frame: pl.DataFrame, col: str, min_seeds: int = 2) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(cells, (n cells, k seeds) array, seeds) of ``col`` on the non-zero cells recorded with each of
    the first k seeds: the most seeds (at least ``min_seeds``) that still share at least half the
    cells the first ``min_seeds`` share."""
    wide = frame.pivot(on="seed", index="arch_index", values=col, aggregate_function="first")
    seeds = sorted(int(c) for c in wide.columns if c != "arch_index")
    if len(seeds) < min_seeds:  # nothing to compare: no cells (table_figures reports cells = 0)
        return np.empty(0, dtype=np.int64), np.empty((0, len(seeds))), seeds
    base = wide.select(["arch_index", *[str(s) for s in seeds[:min_seeds]]]).drop_nulls().height
    for k in range(len(seeds), min_seeds - 1, -1):
        cols = [str(s) for s in seeds[:k]]
        sub = wide.select(["arch_index", *cols]).drop_nulls()
        if sub.height >= base / 2:
            break
    cells = sub["arch_index"].to_numpy()
    live = ~space.zero_cells(cells)
    return cells[live], sub.select(cols).to_numpy()[live], seeds[:k]


def aligned(frame: pl.DataFrame, col: str, cells: np.ndarray, seeds: list[int]) -> np.ndarray:
    """``col`` as a (cells, seeds) array in exactly ``multi_seed``'s row and column order, so that a pick
    on one column and a score on another refer to the same runs; ValueError where a run lacks it."""
    wide = frame.filter(pl.col("seed").is_in(seeds)).pivot(
        on="seed", index="arch_index", values=col, aggregate_function="first"
    )
    order = pl.DataFrame({"arch_index": cells}).cast({"arch_index": wide.schema["arch_index"]})
    out = order.join(wide, on="arch_index", how="left").select([str(s) for s in seeds]).to_numpy().astype(float)
    if np.isnan(out).any():
        raise ValueError(f"{col} is missing for runs whose test_acc is recorded")
    return out


def table_figures(
    frame: pl.DataFrame, none: pl.DataFrame | None = None, teacher_acc: float | None = None, collapse_gap: float = 0.05
) -> dict:
    """The reliability figures of one table (columns arch_index, seed, valid_acc, test_acc,
    valid_acc_curve); ``none`` is the same dataset's no-KD table for KD gain and collapse."""
    cells, test, seeds = multi_seed(frame, "test_acc")
    # cells with seeds 0 and 1 both (the two-seed coverage target), whatever later seeds the figures use
    per_cell = frame.filter(pl.col("seed").is_in([0, 1])).group_by("arch_index").agg(n=pl.col("seed").n_unique())
    live = ~space.zero_cells(per_cell.filter(pl.col("n") == 2)["arch_index"].to_numpy())
    if len(cells) < 3:
        return {"cells": int(len(cells)), "cells_seeds_0_1": int(live.sum())}
    valid = aligned(frame, "valid_acc", cells, seeds)
    icc, icc_k = icc1(test)
    k = test.shape[1]
    top = [top_heldout_percentile(valid[:, s], np.delete(test, s, axis=1).mean(1)) for s in range(k)]
    mean = test.mean(1)
    out = {
        "cells": int(len(cells)),
        "cells_seeds_0_1": int(live.sum()),
        "seeds": seeds,
        "icc1": icc,
        "icc1_ci": list(icc1_ci(test)),
        f"icc_mean{k}": icc_k,
        "seed_abs_diff": float(np.abs(test[:, 0] - test[:, 1]).mean()),
        "kendall_tau": float(stats.kendalltau(test[:, 0], test[:, 1]).statistic),
        "top10_heldout_pct": float(np.mean(top)),
        "mean": float(mean.mean()),
        "iqr": float(np.subtract(*np.percentile(mean, [75, 25]))),
        "best_seed_mean": float(mean.max()),
        "best_heldout": best_heldout(valid, test),
        "late_gain": late_gain(
            frame.filter((pl.col("seed") == seeds[0]) & pl.col("arch_index").is_in(cells.tolist()))[
                "valid_acc_curve"
            ].to_list()
        ),
    }
    if teacher_acc is not None:
        out["teacher_margin"] = float(teacher_acc - mean.max())
        out["teacher_margin_heldout"] = float(teacher_acc - out["best_heldout"])
    if none is not None:
        n_cells, n_test, n_seeds = multi_seed(none, "test_acc")
        common = sorted(set(cells.tolist()) & set(n_cells.tolist()))
        both = [s for s in seeds if s in n_seeds]
        if len(common) >= 3 and both:
            pos_kd = {c: i for i, c in enumerate(cells.tolist())}
            pos_no = {c: i for i, c in enumerate(n_cells.tolist())}
            kd_cols = [seeds.index(s) for s in both]
            no_cols = [n_seeds.index(s) for s in both]
            kd = test[[pos_kd[c] for c in common]][:, kd_cols]
            no = n_test[[pos_no[c] for c in common]][:, no_cols]
            gain = kd.mean(1) - no.mean(1)
            m, lo, hi = mean_ci(gain)
            out.update(
                {
                    "kd_cells": len(common),
                    "kd_gain": m,
                    "kd_gain_ci": [lo, hi],
                    "helped": float((gain > 0).mean()),
                    "collapsed": float((kd < no - collapse_gap).mean()),
                }
            )
    return out


COLUMNS = ["arch_index", "seed", "valid_acc", "test_acc", "valid_acc_curve"]


def shipped_figures(root=None) -> list[dict]:
    """``table_figures`` of every table in the MANIFEST (each recipe of a pair on its own row, so that
    tables v1 and v2 sit side by side), with the KD figures against the same recipe's ``none`` table."""
    from danas_bench.core.paths import tables_dir
    from danas_bench.tables.manifest import load_manifest
    from danas_bench.training import teachers

    root = root or tables_dir()
    entries = {rel: e for rel, e in load_manifest(root)["files"].items() if e.get("kind") == "table"}
    frames = {(e["pair"], e["recipe_id"]): pl.read_parquet(root / rel, columns=COLUMNS) for rel, e in entries.items()}
    planned = {(e["pair"], e["recipe_id"]): e.get("live_cells") for e in entries.values()}  # older merges: None
    rows = []
    for (pair, rid), frame in sorted(frames.items()):
        ds, teacher = split_pair(pair)
        none = frames.get((f"{ds}/none", rid)) if teacher != "none" else None
        acc = teachers.info(ds, teacher)["accuracy"]["test"] if teacher != "none" else None
        figures = table_figures(frame, none, acc)
        rows.append({"pair": pair, "recipe_id": rid, "planned_live_cells": planned[pair, rid], **figures})
    return rows


def render(rows: list[dict]) -> list[str]:
    """The datasheet's reliability table (markdown lines)."""

    def f(r, k, scale=1.0, nd=2):
        v = r.get(k)
        return "-" if v is None else f"{scale * v:.{nd}f}"

    out = [
        "| pair | recipe | cells x seeds | ICC(1) | reliability of the seed mean | top-10% held-out pct | "
        "seed mean abs diff (pp) | last-quarter gain (pp) | mean test acc % | KD gain pp [95% CI] | helped | "
        "collapsed % | teacher margin (pp) | teacher margin over the held-out best (pp) |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        if r.get("cells", 0) < 3:
            continue
        k = len(r["seeds"])
        ci = (
            f"{100 * r['kd_gain']:+.1f} [{100 * r['kd_gain_ci'][0]:+.1f}, {100 * r['kd_gain_ci'][1]:+.1f}]"
            if "kd_gain" in r
            else "-"
        )
        out.append(
            f"| {r['pair']} | `{r['recipe_id']}` | {r['cells']} x {k} | {f(r, 'icc1')} | "
            f"{f(r, f'icc_mean{k}')} ({k} seeds) | {f(r, 'top10_heldout_pct', nd=0)} | "
            f"{f(r, 'seed_abs_diff', 100, 1)} | {f(r, 'late_gain', 100, 1)} | {f(r, 'mean', 100, 1)} | {ci} | "
            f"{f(r, 'helped')} | {f(r, 'collapsed', 100, 1)} | {f(r, 'teacher_margin', 100, 1)} | "
            f"{f(r, 'teacher_margin_heldout', 100, 1)} |"
        )
    return out


# the targets tables v2 must reach (issue 18, "Must show"), checked on each v2 table's own rows; convergence,
# collapse and teacher margin are the recipe search's own criteria (Criteria)
TARGET_ICC1 = 0.75


def target_checks(rows: list[dict], version: str = "v2") -> list[dict]:
    """For every table of ``version`` among ``rows`` (``shipped_figures``): each target's value and whether
    it holds. KD's gain is a per-dataset target (some current teacher's 95% CI above 0), repeated on its pairs.
    A retired teacher's table (``pairs.RETIRED``) keeps its row, marked, and does not count for its dataset."""
    from danas_bench.core.recipe import RecipeMissing, recipe_id_of
    from danas_bench.training.data import TIERS

    crit = Criteria()

    def rid(ds):
        try:
            return recipe_id_of(ds, version)
        except RecipeMissing:
            return None

    mine = [r for r in rows if r.get("cells", 0) >= 3 and r["recipe_id"] == rid(split_pair(r["pair"])[0])]
    kd_holds = {}
    for r in mine:
        ds, teacher = split_pair(r["pair"])
        if teacher != "none" and "kd_gain_ci" in r:  # no KD figures without the same recipe's none table
            current = teacher not in RETIRED.get(ds, {})
            kd_holds[ds] = kd_holds.get(ds, False) or (current and r["kd_gain_ci"][0] > 0)
    live = int((~space.zero_cells(space.canonical_indices())).sum())
    out = []
    for r in mine:
        ds, teacher = split_pair(r["pair"])
        # tier S: every live cell of the space; a sample (tier M): every live cell of it, where its merge
        # recorded how many that is (MANIFEST `live_cells`; older merges did not: n/a)
        target = live if TIERS.get(ds) == "S" else r.get("planned_live_cells")
        two = r.get("cells_seeds_0_1", 0)
        checks = {
            "two_seeds_everywhere": (two, (two >= target) if target else None),
            "icc1": (r["icc1"], r["icc1"] >= TARGET_ICC1, r.get("icc1_ci")),
            "converged": (r["late_gain"], r["late_gain"] < crit.max_late_gain),
        }
        if teacher != "none":
            kd = "kd_gain_ci" in r
            checks["kd_gain_ci_above_0"] = (r.get("kd_gain_ci"), kd_holds[ds] if kd else None)
            checks["collapsed"] = (r.get("collapsed"), r["collapsed"] < crit.max_collapsed if kd else None)
            checks["teacher_margin"] = (
                (r["teacher_margin"], r["teacher_margin_heldout"]),
                r["teacher_margin"] >= crit.min_teacher_margin,
            )
        out.append(
            {
                "pair": r["pair"],
                "recipe_id": r["recipe_id"],
                "seeds": len(r["seeds"]),
                "live": target,
                "sample": TIERS.get(ds) != "S",
                "retired": teacher in RETIRED.get(ds, {}),
                **checks,
            }
        )
    return out


def render_targets(checks: list[dict]) -> list[str]:
    """The targets table (markdown lines): each value, then whether it holds (n/a where a target does not apply)."""

    def mark(ok):
        return "n/a" if ok is None else ("**yes**" if ok else "no")

    out = [
        "| pair | recipe | 2 seeds on every non-zero cell | ICC(1) [95% CI] >= 0.75 | "
        "converged (last-quarter gain < 1 pp) | KD gain 95% CI above 0 (some teacher of the dataset) | "
        "KD collapsed < 2% | teacher >= 2 pp above the best seed-mean student (over the held-out best) |",
        "|" + "---|" * 8,
    ]
    for c in checks:
        cells, ok_cov = c["two_seeds_everywhere"]
        cov = f"{cells} of {c['live']}" if ok_cov is not None else f"{cells}"
        cov += " (sample)" if c["sample"] else ""
        cells_kd = ["-", "-", "-"]
        if "teacher_margin" in c:
            ci, ok = c["kd_gain_ci_above_0"]
            (m, mh), okm = c["teacher_margin"]
            cells_kd = [
                "no none table of this recipe: n/a"
                if ci is None
                else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] pp: {mark(ok)}",
                "n/a" if ci is None else f"{100 * c['collapsed'][0]:.1f}%: {mark(c['collapsed'][1])}",
                f"{100 * m:.2f} ({100 * mh:.2f}) pp: {mark(okm)}",
            ]
        icc, ok_icc, ci = c["icc1"]
        icc_s = f"{icc:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        out.append(
            f"| {c['pair']}{' (retired)' if c.get('retired') else ''} | `{c['recipe_id']}` | {cov}: {mark(ok_cov)} | "
            f"{icc_s}: {mark(ok_icc)} | "
            f"{100 * c['converged'][0]:.2f} pp: {mark(c['converged'][1])} | " + " | ".join(cells_kd) + " |"
        )
    return out

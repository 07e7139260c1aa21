"""Render the recipe search's results (docs/pilot.json) into docs/pilot.md, a frontier plot, and a
short terminal summary. Every number comes from the runs under docs/recipe_search/."""

from __future__ import annotations

from pathlib import Path

from danas_bench.core import space
from danas_bench.reports.reliability import Criteria

PAIRS_PER_DATASET = 3  # two teachers and `none`
TRAINED_SEEDS = 2  # the budget covers seeds 0 and 1 of every cell the tables hold


def generation_cells(res: dict) -> int:
    """The cells a dataset's tables hold: every canonical cell (tier S), or its sample (tier M)."""
    return int(res.get("generation_cells") or space.N_CANONICAL)


def generation_core_hours(core_seconds: float, cells: int = space.N_CANONICAL) -> float:
    """Core-hours to train seeds 0 and 1 of ``cells`` cells for a dataset's three pairs."""
    return cells * TRAINED_SEEDS * PAIRS_PER_DATASET * core_seconds / 3600


def _recipe(r: dict) -> str:
    s = f"w{r['width']} e{r['epochs']} bs{r['batch_size']} n{r['n_train'] or 'all'} lr{r['lr']:g}"
    s += f" wu{r['warmup_epochs']}" if r.get("warmup_epochs") else ""
    return s + (f" clip{r['grad_clip']:g}" if r.get("grad_clip") else "")


def _pp(x: float) -> str:
    return f"{100 * x:+.1f}"


def _min_setting(c: dict) -> dict:
    """The figures of the candidate's least reliable KD setting (the one its minimum ICC(1) is from)."""
    return min(c["settings"].values(), key=lambda v: v["icc1"])


def _min_icc_ci(c: dict) -> str:
    """The candidate's minimum ICC(1) over KD settings with that setting's F-based 95% interval."""
    ci = _min_setting(c).get("icc1_ci")
    return f"{c['icc1_min']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _finality(res: dict) -> str:
    """Whether the pick can still change: it is final once every candidate is measured or already out of
    the budget on its runs so far (those complete the frontier, not the decision)."""
    if not res.get("final", len(res["candidates"]) == res["n_planned"]):
        return " Provisional until every candidate that can be chosen is measured."
    pending = res.get("pending_over_budget") or []
    if not pending:
        return ""
    out = ", ".join(
        f"{_recipe(c['recipe'])} ({c['core_seconds']:.1f} core-s per training on its {c['runs']} runs so far)"
        for c in pending
    )
    return f" Final: not yet fully measured but already over the cap, so the rule cannot choose it: {out}."


def _versus(res: dict) -> str:
    """How far the pick's reliability is ahead of the runner-up's, and whether that is more than noise."""
    v = res.get("versus_runner_up")
    if not v:
        return ""
    name = {c["recipe_id"]: _recipe(c["recipe"]) for c in res["candidates"]}
    lo, hi = v["ci"]
    if lo > 0:
        verdict = "ahead beyond the sampling noise of its cells"
    elif hi < 0:  # the rule put passing its checks before reliability
        verdict = (
            "less reliable beyond the sampling noise of its cells: it is chosen for passing checks the runner-up "
            "fails, at that cost in reliability"
        )
    else:
        verdict = "not distinguishable from it on these cells: the rule's order between the two is within noise"
    return (
        f" Against the runner-up by the same rule, `{v['b']}` ({name.get(v['b'], v['b'])}): minimum ICC(1) "
        f"{v['diff']:+.2f} [{lo:+.2f}, {hi:+.2f}] (paired bootstrap over cells, 95%), {verdict}."
    )


def _rows(ds: str, res: dict) -> list[str]:
    settings = None
    out = []
    for c in res["candidates"]:
        settings = list(c["settings"])
        kd = [t for t in settings if t != "none"]
        per = c["settings"]
        mark = " **chosen**" if c["recipe_id"] == res.get("chosen") else ""
        cells = [
            f"{_recipe(c['recipe'])}{mark}",
            f"`{c['recipe_id']}`",
            " / ".join(f"{per[t]['icc1']:.2f}" for t in settings),
            _min_icc_ci(c),
            " / ".join(f"{per[t]['top10_heldout_pct']:.0f}" for t in settings),
            " / ".join(f"{100 * per[t]['seed_abs_diff']:.1f}" for t in settings),
            " / ".join(f"{per[t]['kendall_tau']:.2f}" for t in settings),
            " / ".join(f"{100 * per[t]['mean']:.1f} ({100 * per[t]['iqr']:.1f})" for t in settings),
            " / ".join(f"{100 * per[t]['late_gain']:.1f}" for t in settings),
            " / ".join(
                f"{_pp(per[t]['kd_gain'])} [{_pp(per[t]['kd_gain_ci'][0])}, {_pp(per[t]['kd_gain_ci'][1])}]" for t in kd
            ),
            " / ".join(f"{per[t]['helped']:.2f}" for t in kd),
            " / ".join(f"{100 * per[t]['collapsed']:.1f}" for t in kd),
            " / ".join(f"{100 * per[t]['teacher_margin']:.1f}" for t in kd),
            f"{c['core_seconds']:.2f}",
            ", ".join(k for k, v in c["checks"].items() if not v) or "all pass",
        ]
        out.append("| " + " | ".join(cells) + " |")
    if not out:
        return []
    kd = [t for t in settings if t != "none"]
    head = [
        "recipe",
        "id",
        f"ICC(1) {'/'.join(settings)}",
        "min ICC(1) [95% CI]",
        "top-10% held-out pct",
        "seed mean abs diff (pp)",
        "Kendall tau",
        "mean test acc % (IQR)",
        "last-quarter gain (pp)",
        f"KD gain pp [95% CI] {'/'.join(kd)}",
        "share helped",
        "KD collapsed %",
        "teacher margin (pp)",
        "core-s / training",
        "fails",
    ]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + out


def _longer(res: dict) -> list[str]:
    """The 'does training longer pay' lines: candidates that differ only in their schedule's length."""
    pairs = res.get("longer") or []
    if not pairs:
        return []
    name = {c["recipe_id"]: _recipe(c["recipe"]) for c in res["candidates"]}
    out = [
        "Does training longer still pay? Candidates that differ only in epochs (and warmup): the longer one's "
        "seed-mean test accuracy minus the shorter one's, per cell, mean [95% CI] in pp per KD setting. The "
        "convergence check reads the validation curve's last quarter, where the cosine schedule's annealing "
        "adds a gain of its own; this says whether more epochs move the final accuracy.",
        "",
    ]
    for d in pairs:
        per = d["settings"]
        out.append(
            f"- {name.get(d['short'], d['short'])} -> {d['epochs'][1]} epochs ({name.get(d['long'], d['long'])}): "
            + ", ".join(f"{t} {_pp(v['gain'])} [{_pp(v['ci'][0])}, {_pp(v['ci'][1])}]" for t, v in per.items())
        )
    return out + [""]


def plot_frontier(results: dict, path: Path) -> None:
    """Reliability (minimum ICC(1) over KD settings, with its 95% interval) against cost, one panel per
    dataset; the Pareto frontier joined, the budget cap dashed, the chosen candidate circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (ds, res) in zip(axes[0], results.items()):
        cands = res["candidates"]
        if not cands:
            continue
        x = [c["core_seconds"] for c in cands]
        y = [c["icc1_min"] for c in cands]
        ok = [all(c["checks"].values()) for c in cands]
        ci = [_min_setting(c).get("icc1_ci") for c in cands]
        if all(ci):  # each candidate's F-based 95% interval of its minimum ICC(1)
            ax.errorbar(
                x,
                y,
                yerr=[[b - lo for b, (lo, _) in zip(y, ci)], [hi - b for b, (_, hi) in zip(y, ci)]],
                fmt="none",
                ecolor="lightgrey",
                elinewidth=1,
                zorder=0,
            )
        ax.scatter(
            [a for a, o in zip(x, ok) if o], [b for b, o in zip(y, ok) if o], c="tab:green", label="passes all checks"
        )
        ax.scatter(
            [a for a, o in zip(x, ok) if not o],
            [b for b, o in zip(y, ok) if not o],
            c="tab:red",
            marker="x",
            label="fails a check",
        )
        front, best = [], -1.0
        for a, b in sorted(zip(x, y)):
            if b > best:
                front.append((a, b))
                best = b
        ax.plot(*zip(*front), "k-", lw=0.8, label="frontier")
        ax.axvline(res["budget_core_seconds"], ls="--", c="grey", label="budget cap")
        for c in cands:
            if c["recipe_id"] == res.get("chosen"):
                ax.scatter(
                    [c["core_seconds"]], [c["icc1_min"]], s=160, facecolors="none", edgecolors="k", label="chosen"
                )
        ax.set(
            title=f"{ds}: reliability vs cost", xlabel="core-seconds per training", ylabel="min ICC(1) over KD settings"
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    plot_frontier(results, out_dir / "figures" / "pilot_frontier.png")
    # the thresholds in force (a dataset's entry written before a threshold existed reads its default)
    crit = {**Criteria().__dict__, **next(iter(results.values()))["criteria"]}
    tier_s = [
        generation_core_hours(r["budget_core_seconds"])
        for r in results.values()
        if generation_cells(r) == space.N_CANONICAL
    ]
    L = [
        "# Recipe search (tables v2)",
        "",
        "Generated by `danas-bench pilot` from its own runs (`docs/recipe_search/<dataset>-<recipe_id>.parquet`, "
        "one row per cell, seed and KD setting; `docs/pilot.json` holds every figure). The tables v1 pilot, which "
        "tried one candidate per dataset, is in `docs/pilot-v1.md`.",
        "",
        "## Protocol",
        "",
        "Every candidate of a dataset trains the same seeded sample of non-zero canonical cells (`n_cells` per "
        "dataset, sample seed in `conf/pilot.yaml`) with seeds 0 and 1, once without KD and once with each teacher "
        "(T = 4, alpha = 0.9), with the fused engine, one process per core. Per KD setting (`none` first, then the "
        "teachers):",
        "",
        "- **ICC(1)**: one-way random-effects intraclass correlation of test accuracy over cells: the share of a "
        "single run's variance that is the architecture's;",
        "- **top-10% held-out percentile**: the 10% of cells with the best seed-0 valid accuracy, their mean "
        "percentile under seed-1 test accuracy (and seed 1 -> seed 0, averaged; 50 is chance, 95 is perfect);",
        "- seed-to-seed mean |diff| and Kendall tau of test accuracy; mean and IQR of the seed-mean test accuracy;",
        f"- **converged**: the median validation curve gains < {100 * crit['max_late_gain']:.0f} pp over the last "
        "quarter of the epochs;",
        f"- **KD collapsed**: the share of KD runs more than {100 * crit['collapse_gap']:.0f} pp below the same "
        "cell's no-KD run with the same seed; **KD gain**: seed-mean KD minus no-KD test accuracy per cell, mean "
        "with a 95% t-interval over cells; share of cells helped;",
        "- **teacher margin**: teacher test accuracy minus the best seed-mean student of the candidate (any KD "
        "setting);",
        "- **cost**: process CPU seconds per training (core-seconds), including evaluation.",
        "",
        "## The rule",
        "",
        "Budget: seeds 0 and 1 of every cell a dataset's tables hold (all 6,466 canonical cells for tier S; "
        "the tier-M sample for fashion-mnist), for its three pairs, split as a cap per training: "
        + ", ".join(
            f"{ds} {res['budget_core_seconds']:g} core-s x {generation_cells(res):,} cells "
            f"({generation_core_hours(res['budget_core_seconds'], generation_cells(res)):.1f} core-h)"
            for ds, res in results.items()
        )
        + f". The tier-S caps share 40 core-hours: {' + '.join(f'{h:.1f}' for h in tier_s)} = {sum(tier_s):.1f} "
        "core-hours (6,466 x 2 seeds x 3 pairs x cap).",
        "",
        "Among the candidates within the cap that pass every check (converged for KD and no-KD; KD collapsed "
        f"< {100 * crit['max_collapsed']:.0f}% for every teacher; KD's 95% CI above 0 for at least one teacher; "
        f"every teacher >= {100 * crit['min_teacher_margin']:.0f} pp above the best student), choose the most "
        "reliable: the highest minimum ICC(1) over KD settings; among those within "
        f"{crit['near_best_icc']} of it, the highest minimum top-10% percentile. When no candidate passes every "
        "check, the candidates within the cap failing the fewest checks compete by the same rule, and the failed "
        "checks are the stated shortfall. The pick is final once every other candidate is measured or, not yet "
        f"fully measured, already costs more than {crit['partial_cost_margin']:g}x the cap on its runs so far "
        "(one candidate's KD settings differ by at most 11% in cost on fashion-mnist's measured candidates): the "
        "rule cannot choose such a candidate, and its remaining runs complete the frontier, not the decision.",
        "",
        "Candidates were planned in stages: where the measured ones showed a direction, the ones not yet run "
        "were replaced (`danas_bench/conf/pilot.yaml` says which and why). A fully measured candidate is never "
        "dropped; mnist1d's width-12 candidate was dropped about half run, its runs kept out of the report.",
        "",
        "![reliability vs cost](figures/pilot_frontier.png)",
        "",
        "Grey bars: each candidate's 95% interval of its minimum ICC(1) (F distribution, one-way model). On "
        "128 cells they are about +-0.15 wide, on fashion-mnist's 48 about +-0.2: most candidates' reliabilities "
        "overlap, which is why each dataset's pick is compared with its runner-up below.",
        "",
    ]
    for ds, res in results.items():
        n = len(res["candidates"])
        L += [
            f"## {ds}",
            "",
            f"{n} of {res['n_planned']} candidates measured on {len(res['cells'])} cells x 2 seeds"
            + (
                f" (the search resumes where it stopped: rerun `danas-bench pilot 'datasets=[{ds}]'`)."
                if n < res["n_planned"]
                else "."
            ),
        ]
        if res.get("chosen"):
            c = next(c for c in res["candidates"] if c["recipe_id"] == res["chosen"])
            L += [
                "",
                f"**Chosen: `{res['chosen']}`** ({_recipe(c['recipe'])}), "
                f"{c['core_seconds']:.2f} core-s per training = "
                f"{generation_core_hours(c['core_seconds'], generation_cells(res)):.1f} core-hours for seeds 0 "
                f"and 1 of {ds}'s three pairs ({generation_cells(res):,} cells). "
                + (
                    "Passes every check."
                    if not res["shortfall"]
                    else f"Shortfall: fails {', '.join(res['shortfall'])} "
                    "(no candidate within the cap passes every check)."
                )
                + _versus(res)
                + _finality(res),
            ]
        L += [""] + _rows(ds, res) + [""] + _longer(res)
    (out_dir / "pilot.md").write_text("\n".join(L) + "\n")


def summary_lines(results: dict) -> list[str]:
    out = []
    for ds, res in results.items():
        c = next((c for c in res["candidates"] if c["recipe_id"] == res.get("chosen")), None)
        if c is None:
            out.append(f"{ds}: no recipe chosen yet ({len(res['candidates'])}/{res['n_planned']} measured)")
            continue
        out.append(
            f"{ds}: {res['chosen']} ({_recipe(c['recipe'])}), min ICC(1) {c['icc1_min']:.2f}, "
            f"top-10% pct {c['top10_min']:.0f}, {c['core_seconds']:.2f} core-s; "
            f"shortfall: {', '.join(res['shortfall']) or 'none'}"
        )
    return out

"""The datasheet of the shipped tables ("Datasheets for Datasets"), computed from the tables themselves.

Every number in ``docs/datasheet.md`` comes from this module reading ``tables/MANIFEST`` and the files
it lists, so rerunning ``danas-bench datasheet`` reproduces it: coverage, recipes, teachers, compute
spent, noise (seed-to-seed std and Kendall tau on the noise sample), the KD analysis (KD vs no-KD per
pair, tau between the two teachers' rankings, overlap of their best students) and accuracy vs cost
Pareto fronts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import kendalltau

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.pairs import split_pair
from danas_bench.core.paths import archs_file, shard_dir, tables_dir
from danas_bench.reports import teachers as teachers_doc
from danas_bench.tables.manifest import load_manifest

COLUMNS = ["arch_index", "seed", "valid_acc", "test_acc", "train_seconds", "test_agreement", "test_ece"]
TOP_K = 50


def load_pairs(root: Path | None = None) -> dict[str, dict]:
    """pair -> {"frame": polars frame of the table, "meta": its metadata, "file": path}; from the MANIFEST.
    The pairs ``open_all()`` serves (``catalog.default_pairs``: a pair that exists only in a v2 in progress
    waits), each at the recipe ``open(pair)`` reads, so that KD is compared with the same recipe's ``none``;
    the reliability section lists every version."""
    from danas_bench.core.recipe import recipe_for
    from danas_bench.query.catalog import default_pairs

    root = root or tables_dir()
    served = set(default_pairs(root))
    tables = {rel: e for rel, e in load_manifest(root)["files"].items() if e.get("kind") == "table"}
    recipes: dict[str, set] = {}
    for e in tables.values():
        recipes.setdefault(e["pair"], set()).add(e.get("recipe_id"))
    out = {}
    for rel, entry in sorted(tables.items()):
        if entry["pair"] not in served or (
            len(recipes[entry["pair"]]) > 1
            and entry.get("recipe_id") != recipe_for(split_pair(entry["pair"])[0]).recipe_id
        ):
            continue
        path = root / rel
        meta = tb.read_meta(path)
        out[meta["pair"]] = {"frame": pl.read_parquet(path, columns=COLUMNS), "meta": meta, "file": rel, "entry": entry}
    return out


def _tau(a, b) -> float:
    return float(kendalltau(a, b).statistic) if len(a) > 2 else float("nan")


def pair_stats(frame: pl.DataFrame, meta: dict) -> dict:
    s0 = frame.filter(pl.col("seed") == 0)
    acc = s0["test_acc"].to_numpy()
    stats = {
        "rows": frame.height,
        "archs_seed0": s0.height,
        "coverage_seed0": s0.height / space.N_CANONICAL,
        "seeds": sorted(frame["seed"].unique().to_list()),
        "test_acc": {
            "min": float(acc.min()),
            "q25": float(np.percentile(acc, 25)),
            "median": float(np.median(acc)),
            "q75": float(np.percentile(acc, 75)),
            "max": float(acc.max()),
        },
        "core_seconds": float(frame["train_seconds"].sum()),
        "recipe_id": meta["recipe_id"],
        "recipe": meta.get("recipe"),
    }
    # noise: the architectures that have more than one seed
    wide = frame.pivot(on="seed", index="arch_index", values="test_acc").drop_nulls()
    seeds = [c for c in wide.columns if c != "arch_index"]
    if len(seeds) > 1:
        m = wide.select(seeds).to_numpy()
        taus = [_tau(m[:, i], m[:, j]) for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
        stats["noise"] = {
            "archs": int(m.shape[0]),
            "seeds": [int(s) for s in seeds],
            "mean_std": float(m.std(axis=1, ddof=1).mean()),
            "seed_tau_mean": float(np.mean(taus)),
            "seed_tau_min": float(np.min(taus)),
        }
    return stats


def kd_stats(kd: pl.DataFrame, none: pl.DataFrame) -> dict:
    j = (
        kd.filter(pl.col("seed") == 0)
        .select("arch_index", kd=pl.col("test_acc"))
        .join(none.filter(pl.col("seed") == 0).select("arch_index", none=pl.col("test_acc")), on="arch_index")
    )
    if j.height < 3:
        return {"archs": j.height}
    gain = (j["kd"] - j["none"]).to_numpy()
    return {
        "archs": j.height,
        "tau_kd_none": _tau(j["kd"].to_numpy(), j["none"].to_numpy()),
        "mean_gain": float(gain.mean()),
        "share_helped": float((gain > 0).mean()),
        "top_overlap": _top_overlap(j, "kd", "none"),
    }


def _top_overlap(j: pl.DataFrame, a: str, b: str, k: int = TOP_K) -> float:
    k = min(k, max(1, j.height // 10))
    ta = set(j.sort(a, descending=True)["arch_index"][:k].to_list())
    tb_ = set(j.sort(b, descending=True)["arch_index"][:k].to_list())
    return len(ta & tb_) / k


def teacher_stats(a: pl.DataFrame, b: pl.DataFrame) -> dict:
    j = (
        a.filter(pl.col("seed") == 0)
        .select("arch_index", a=pl.col("test_acc"))
        .join(b.filter(pl.col("seed") == 0).select("arch_index", b=pl.col("test_acc")), on="arch_index")
    )
    if j.height < 3:
        return {"archs": j.height}
    best_a = j.sort("a", descending=True)["arch_index"][0]
    best_b = j.sort("b", descending=True)["arch_index"][0]
    return {
        "archs": j.height,
        "tau": _tau(j["a"].to_numpy(), j["b"].to_numpy()),
        "top_overlap": _top_overlap(j, "a", "b"),
        "best_a": space.arch_str(int(best_a)),
        "best_b": space.arch_str(int(best_b)),
    }


def _plots(pairs: dict, root: Path, fig_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    made = []
    by_ds: dict[str, dict] = {}
    for pair, p in pairs.items():
        ds, t = split_pair(pair)
        by_ds.setdefault(ds, {})[t] = p
    for ds, ps in sorted(by_ds.items()):
        kd_teachers = [t for t in sorted(ps) if t != "none"]
        if "none" in ps and kd_teachers:
            fig, axes = plt.subplots(1, len(kd_teachers), figsize=(4.2 * len(kd_teachers), 3.8), squeeze=False)
            none = ps["none"]["frame"].filter(pl.col("seed") == 0).select("arch_index", none=pl.col("test_acc"))
            for ax, t in zip(axes[0], kd_teachers):
                j = (
                    ps[t]["frame"]
                    .filter(pl.col("seed") == 0)
                    .select("arch_index", kd=pl.col("test_acc"))
                    .join(none, on="arch_index")
                )
                ax.scatter(j["none"], j["kd"], s=2, alpha=0.4)
                lo, hi = float(min(j["none"].min(), j["kd"].min())), float(max(j["none"].max(), j["kd"].max()))
                ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
                ax.set(title=f"{ds}: KD ({t}) vs no-KD", xlabel="no-KD test acc", ylabel=f"KD ({t}) test acc")
            fig.tight_layout()
            name = f"datasheet_{ds}_kd_vs_none.png"
            fig.savefig(fig_dir / name, dpi=100)
            plt.close(fig)
            made.append(name)
        archs = _archs_frame(root, ds, ps)
        if archs is not None:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
            for t, p in sorted(ps.items()):
                j = p["frame"].filter(pl.col("seed") == 0).join(archs, on="arch_index")
                for ax, cost in zip(axes, ("params", "latency_ms")):
                    x, y = j[cost].to_numpy(), j["test_acc"].to_numpy()
                    fx, fy = pareto(x, y)
                    ax.scatter(x, y, s=1, alpha=0.15)
                    ax.step(fx, fy, where="post", label=t)
            for ax, cost in zip(axes, ("params", "latency ms")):
                ax.set(xlabel=cost, ylabel="test acc", title=f"{ds}: accuracy vs {cost} (Pareto front)")
                ax.legend()
            axes[0].set_xscale("log")
            fig.tight_layout()
            name = f"datasheet_{ds}_pareto.png"
            fig.savefig(fig_dir / name, dpi=100)
            plt.close(fig)
            made.append(name)
    return made


def _archs_frame(root: Path, ds: str, ps: dict) -> pl.DataFrame | None:
    rid = next(iter(ps.values()))["meta"]["recipe_id"]
    path = archs_file(ds, rid, root)
    return pl.read_parquet(path, columns=["arch_index", "params", "latency_ms"]) if path.exists() else None


def pareto(cost: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points no other point beats on both (lower cost, higher accuracy), by increasing cost."""
    order = np.lexsort((-acc, cost))
    best, fx, fy = -np.inf, [], []
    for i in order:
        if acc[i] > best:
            best = acc[i]
            fx.append(cost[i])
            fy.append(acc[i])
    return np.array(fx), np.array(fy)


def shard_seconds(root: Path, pair: str, recipe_id: str) -> dict | None:
    """Mean recorded ``train_seconds`` per row of each shard of a table (``tables/shards/...``), or None
    where the shards are not shipped.

    Shards are seeded random samples of one table's architectures, so their means would agree if every
    shard had been timed alike; the spread shows how far engine versions, machines and other load on
    the machine (wall-clock time before session 7, CPU time since) make simulated time differ across
    a table."""
    files = sorted(shard_dir(pair, recipe_id, root).glob("shard-*.parquet"))
    if not files:
        return None
    per = np.array([pl.read_parquet(f, columns=["train_seconds"])["train_seconds"].mean() for f in files])
    med = float(np.median(per))
    return {
        "shards": len(files),
        "median_s_per_row": med,
        "min_over_median": float(per.min() / med),
        "max_over_median": float(per.max() / med),
        "share_over_1_5x": float(np.mean(per > 1.5 * med)),
    }


def compute(root: Path | None = None) -> dict:
    root = root or tables_dir()
    pairs = load_pairs(root)
    out: dict = {"pairs": {}, "kd": {}, "teachers": {}, "shard_seconds": {}}
    by_ds: dict[str, dict] = {}
    for pair, p in pairs.items():
        out["pairs"][pair] = pair_stats(p["frame"], p["meta"])
        out["pairs"][pair].update(
            {
                "file": p["file"],
                "sampled": bool(p["entry"].get("sampled", False)),
                "partial": bool(p["entry"].get("partial", False)),
                "teacher_test_acc": (p["meta"].get("teacher_accuracy") or {}).get("test"),
                "machine": p["meta"].get("machine"),
                "versions": {k: p["meta"].get(k) for k in ("code_version", "torch_version")},
                "shard_code_revisions": p["meta"].get("shard_code_revisions"),
                "shard_machines": p["meta"].get("shard_machines"),
                "shard_torch_versions": p["meta"].get("shard_torch_versions"),
            }
        )
        out["shard_seconds"][pair] = shard_seconds(root, pair, p["meta"]["recipe_id"])
        ds, t = split_pair(pair)
        by_ds.setdefault(ds, {})[t] = p["frame"]
    for ds, fr in sorted(by_ds.items()):
        kd_teachers = [t for t in sorted(fr) if t != "none"]
        if "none" in fr:
            for t in kd_teachers:
                out["kd"][f"{ds}/{t}"] = kd_stats(fr[t], fr["none"])
        if len(kd_teachers) >= 2:
            a, b = kd_teachers[:2]
            out["teachers"][ds] = {"a": a, "b": b, **teacher_stats(fr[a], fr[b])}
    from danas_bench.reports.expected import collect

    out["expected"] = collect(root)  # the validation `danas-bench expected` wrote into its files
    from danas_bench.reports.reliability import shipped_figures

    out["reliability"] = shipped_figures(root)  # every table of every recipe: v1 beside v2
    out["latency_retest"] = latency_retest(root)
    return out


def latency_retest(root: Path) -> list[dict]:
    """Spearman between the latencies of archs files that time the same students (one dataset, equal
    widths, e.g. digits v1 and v2): a test-retest of ``latency_ms`` over the whole pipeline."""
    from scipy.stats import spearmanr

    from danas_bench.core.recipe import Recipe

    groups: dict[tuple, list] = {}
    for rel, e in sorted(load_manifest(root)["files"].items()):
        if e.get("kind") != "archs":
            continue
        meta = tb.read_meta(root / rel)
        widths = Recipe.from_dict(meta["recipe"]).widths()
        groups.setdefault((meta["dataset"], tuple(sorted(widths.items()))), []).append((rel, root / rel))
    out = []
    for (dataset, _), files in groups.items():
        for i in range(len(files) - 1):
            (ra, pa), (rb, pb) = files[i], files[i + 1]
            a, b = (pl.read_parquet(p, columns=["arch_index", "latency_ms"]) for p in (pa, pb))
            both = a.join(b, on="arch_index", suffix="_b")
            if both.height >= 3:
                rho = spearmanr(both["latency_ms"], both["latency_ms_b"]).statistic
                out.append({"dataset": dataset, "files": [ra, rb], "archs": both.height, "spearman": float(rho)})
    return out


def _f(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def render(res: dict, figures: list[str]) -> str:
    L = [
        "# danas-bench datasheet",
        "",
        "Generated by `danas-bench datasheet` from `tables/MANIFEST` and the files it lists; rerun it to "
        "reproduce every number here (also in `docs/datasheet.json`).",
        "",
        "## Motivation and composition",
        "",
        "Knowledge-distillation (KD) accuracies of students drawn from the NAS-Bench-201 cell space "
        f"({space.N_CANONICAL} canonical architectures), one table per (dataset, teacher) pair, teacher `none` "
        "being plain training. One row per (architecture, seed): learning curves, final valid/test accuracy, "
        "loss, calibration error, agreement and KL with the teacher, training seconds. Seed 0 covers the "
        "architecture set (every canonical cell on tier S, a seeded sample on tier M); the other seeds (the "
        "`seeds` column) cover all of it in tables v2 and a seeded 10% of it in v1 (noise estimates).",
        "",
        "| pair | file | rows | seed-0 coverage | seeds | test acc min / median / max | IQR | teacher test acc | "
        "compute (core-h) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pair, s in sorted(res["pairs"].items()):
        a = s["test_acc"]
        status = " (sampled)" if s["sampled"] else (" (partial)" if s["partial"] else "")
        L.append(
            f"| {pair} | `{s['file']}` | {s['rows']} | {100 * s['coverage_seed0']:.1f}%{status} | "
            f"{s['seeds']} | {_f(a['min'])} / {_f(a['median'])} / {_f(a['max'])} | {_f(a['q75'] - a['q25'])} | "
            f"{_f(s['teacher_test_acc'], 4)} | {s['core_seconds'] / 3600:.2f} |"
        )
    total = sum(s["core_seconds"] for s in res["pairs"].values()) / 3600
    L += [
        "",
        f"Total compute recorded in the tables: **{total:.2f} core-hours** (sum of `train_seconds`).",
        "",
        "## Collection process",
        "",
    ]
    for pair, s in sorted(res["pairs"].items()):
        m = s.get("machine") or {}
        v = s.get("versions") or {}
        where = (
            f"shards per machine {s['shard_machines']}"
            if s.get("shard_machines")
            else f"machine {m.get('host_cpu', '?')}"
        )
        torches = s.get("shard_torch_versions") or {}  # the shards' own, not the merging machine's
        torch_v = (
            f"shards per torch version {torches}"
            if len(torches) > 1
            else f"torch {next(iter(torches), v.get('torch_version', '?'))}"
        )
        L.append(
            f"- **{pair}**: recipe `{s['recipe_id']}` = {s['recipe']}; {where} ({m.get('cores', '?')} cores); "
            f"danas-bench {v.get('code_version', '?')}, {torch_v}"
            + (f"; shards per code revision: {s['shard_code_revisions']}" if s.get("shard_code_revisions") else "")
            + "."
        )
    L += [
        "",
        "Splits, teachers and recipes: see `docs/teachers.md` and `docs/pilot.md`; each file's metadata "
        "records its split hashes, recipe, KD setting and versions.",
        "",
        "### Simulated time across shards",
        "",
        "A row's `train_seconds` is its share of its fused chunk's measured time (half by FLOPs, half "
        "equal), so within a chunk it orders architectures by cost; across chunks it carries whatever "
        "differed when they ran: the engine version (shards of earlier, slower engines), the machine, and "
        "other load (until session 7 the engine recorded wall-clock time, which also counted time the "
        "worker was paused or shared its core; since then it records the process CPU time). Shards are "
        "seeded random samples of a table's architectures, so their mean seconds per row would agree if "
        "they had been timed alike:",
        "",
        "| pair | shards | median s / row | min / max over median | shards over 1.5x the median |",
        "|---|---|---|---|---|",
    ]
    for pair, t in sorted(res.get("shard_seconds", {}).items()):
        if t is None:
            L.append(f"| {pair} | - | shards not shipped | - | - |")
        else:
            L.append(
                f"| {pair} | {t['shards']} | {t['median_s_per_row']:.2f} | {t['min_over_median']:.2f} / "
                f"{t['max_over_median']:.2f} | {100 * t['share_over_1_5x']:.0f}% |"
            )
    L += [
        "",
        "Simulated-time budgets (`budget.seconds`) therefore compare searchers fairly only as far as this "
        "spread allows; query-count budgets (the leaderboard's default) are unaffected.",
        "",
        "## Noise (the cells with seeds beyond seed 0: a 10% sample in v1, every cell in v2)",
        "",
        "| pair | archs | seeds | mean seed-to-seed std of test acc | Kendall tau between seeds (mean / min) |",
        "|---|---|---|---|---|",
    ]
    for pair, s in sorted(res["pairs"].items()):
        n = s.get("noise")
        if n:
            L.append(
                f"| {pair} | {n['archs']} | {n['seeds']} | {_f(n['mean_std'], 4)} | "
                f"{_f(n['seed_tau_mean'])} / {_f(n['seed_tau_min'])} |"
            )
        else:
            L.append(f"| {pair} | 0 | - | not yet generated | - |")
    L += [
        "",
        "## KD analysis",
        "",
        f"Per KD pair against the same dataset's `none` table on seed 0: Kendall tau between the KD and no-KD "
        f"rankings, the mean KD gain in test accuracy, the share of architectures KD helps, and the overlap "
        f"of the top-{TOP_K} (or top 10%) architectures.",
        "",
        "| pair | archs | tau(KD, no-KD) | mean KD gain | share helped | top overlap |",
        "|---|---|---|---|---|---|",
    ]
    for pair, k in sorted(res["kd"].items()):
        if "tau_kd_none" in k:
            L.append(
                f"| {pair} | {k['archs']} | {_f(k['tau_kd_none'])} | {k['mean_gain']:+.4f} | "
                f"{_f(k['share_helped'], 2)} | {_f(k['top_overlap'], 2)} |"
            )
    L += [
        "",
        "Between the two teachers of a dataset (seed 0):",
        "",
        "| dataset | teachers | archs | tau | top overlap | best student (a) | best student (b) |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, t in sorted(res["teachers"].items()):
        if "tau" in t:
            L.append(
                f"| {ds} | {t['a']} / {t['b']} | {t['archs']} | {_f(t['tau'])} | {_f(t['top_overlap'], 2)} | "
                f"`{t['best_a']}` | `{t['best_b']}` |"
            )
    L += [""] + [f"![{f}](figures/{f})" for f in figures]
    from danas_bench.reports.expected import datasheet_lines

    L += [""] + datasheet_lines(res.get("expected") or [])
    from danas_bench.reports import reliability

    L += [
        "",
        "## Reliability per table (tables v1 and v2)",
        "",
        "Computed from each table's rows by `danas_bench.reports.reliability` (the figures the recipe search chooses "
        "by, `docs/pilot.md`), on the non-zero cells recorded with every listed seed. ICC(1): the share of a "
        "single run's test-accuracy variance that is the architecture's; reliability of the seed mean: "
        "ICC(k); top-10% held-out percentile: the top 10% of cells by one seed's valid accuracy, their "
        "percentile under the other seeds' mean test accuracy (averaged over the picking seed; 50 is chance); "
        "KD gain: seed-mean KD minus no-KD test accuracy of the same recipe, mean with a 95% t-interval; "
        "collapsed: KD runs > 5 pp below the same cell and seed without KD; teacher margin: teacher test "
        "accuracy minus the best seed-mean student; over the held-out best: teacher test accuracy minus the "
        "held-out best student (for each seed, the cell with the best mean valid accuracy over the other seeds, "
        "scored by this seed's test accuracy; averaged over seeds). The best seed mean over thousands of cells "
        "is the top of many noisy means and overstates the best student; the held-out best scores its pick "
        "without bias but may pick a lesser cell, so it understates it: the true margin lies between the two "
        "margins. The held-out best is the mean of k single runs (noise about one run's seed spread over sqrt(k)).",
        "",
    ]
    L += reliability.render(res.get("reliability") or [])
    L += [
        "",
        "## Tables v2 against their targets",
        "",
        "The targets of tables v2 (issue 18), checked on each v2 table's own rows by "
        "`danas_bench.reports.reliability.target_checks` (the figures of the table above): seeds 0 and 1 on "
        "every non-zero canonical cell (tier S) or cell of the sample (tier M); single-run ICC(1) >= 0.75; "
        "converged; for each dataset some teacher whose mean KD gain has a 95% CI above 0; KD collapsed in "
        "< 2% of runs; every teacher >= 2 pp "
        "above the best seed-mean student (the margin over the held-out best student in brackets: the true "
        "margin lies between the two). A table in progress (partial) is checked on the cells it holds. "
        "Convergence is read off the median validation curve, whose steps are one validation example "
        "(digits: 300 examples, steps of 0.33 pp, so 1.00 pp is 3 examples and the next step down passes).",
        "",
    ]
    L += reliability.render_targets(reliability.target_checks(res.get("reliability") or []))
    L += [
        "",
        "## Uses and limits",
        "",
        "- Intended for comparing architecture searchers for distillation on equal, simulated budgets.",
        "- The recipes are short (see `docs/pilot.md`): single-seed rankings carry the noise above; "
        'compare searchers over many runs and prefer `seed="mean"` where noise seeds exist.',
        "- Partial tables cover a uniform random subset of the space (shards are seeded permutations); "
        "the query API trains what is missing live with the table's recipe.",
        "- `latency_ms` (AKD's reward, the Pareto plots) is timed on the machine in each archs file's metadata, "
        "round-robin over blocks of architectures; two builds of the same students agree at "
        + (
            "; ".join(
                f"Spearman {r['spearman']:.2f} ({r['dataset']}, {r['archs']} architectures, "
                f"{' vs '.join(Path(f).name for f in r['files'])})"
                for r in res.get("latency_retest") or []
            )
            or "(no two archs files of the same students to compare)"
        )
        + ": a ranking on this machine, not a hardware claim.",
        "- Training seconds (the simulated time budgets charge) differ from shard to shard by engine "
        "version, machine and load: see *Simulated time across shards* (shards are random samples of "
        "the space, so the bias is spread evenly, not by architecture).",
        "",
    ]
    return "\n".join(L)


def write(root: Path | None = None, out_dir: Path = Path("docs")) -> dict:
    root = root or tables_dir()
    res = compute(root)
    figures = _plots(load_pairs(root), root, out_dir / "figures")
    (out_dir / "datasheet.json").write_text(json.dumps(res, indent=1, default=str))
    (out_dir / "datasheet.md").write_text(render(res, figures))
    teachers_doc.report(out_dir / "teachers.md", res.get("reliability") or [], root)  # the margins grow with the tables
    return res

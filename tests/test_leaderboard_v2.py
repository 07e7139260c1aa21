"""Leaderboard v2 (issue 19): held-out scoring, overlay isolation, matched runs, fail fast, and the
statistics' behaviour on synthetic benches whose truth is known.

Nothing here writes into the repository's tables/ or docs/: outputs go to pytest's tmp_path.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from danas_bench.core import stats
from danas_bench.core.paths import tables_dir
from danas_bench.reports import heldout, leaderboard
from danas_bench.reports import leaderboard_claims as lb_claims
from danas_bench.reports import leaderboard_report as lb_report
from danas_bench.search import LazyPool, run, synthetic
from danas_bench.search.baselines import make


class _Rows:
    """A bench whose shipped rows are ``frame`` (for checking what the target reads)."""

    def __init__(self, bench, frame: pl.DataFrame):
        self.pair, self.dataset, self.teacher = bench.pair, bench.dataset, bench.teacher
        self._frame = frame

    def frame(self) -> pl.DataFrame:
        return self._frame


# --- held-out scoring ---------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.1, 1.0])
def test_heldout_score_never_reads_the_visible_seed(share):
    bench = synthetic.SyntheticBench("synth-a/resnet", seed_share=share)
    frame = bench.frame()
    target = heldout.HeldOutSeeds(bench)
    rng = np.random.default_rng(0)
    for visible in target.space.visible_seeds:
        # the visible seed's test accuracy replaced by garbage: the score must not move
        garbage = frame.with_columns(
            pl.when(pl.col("seed") == visible)
            .then(pl.lit(rng.random(frame.height)).cast(pl.Float32))
            .otherwise(pl.col("test_acc"))
            .alias("test_acc")
        )
        other = heldout.HeldOutSeeds(_Rows(bench, garbage))
        np.testing.assert_array_equal(other.archs, target.archs)
        np.testing.assert_array_equal(other.score(visible), target.score(visible))
        # and it is the mean of the other seeds
        cols = [s for s in target.space.seeds if s != visible]
        want = np.mean([target.space.column("test_acc", s) for s in cols], axis=0)
        np.testing.assert_allclose(target.score(visible), want)


def test_space_is_the_multi_seed_subspace_until_tables_grow():
    small = heldout.Space(synthetic.SyntheticBench("synth-a/resnet", seed_share=0.1), 2)
    full = heldout.Space(synthetic.SyntheticBench("synth-a/resnet"), 2)
    assert not small.whole and 0.05 < len(small.archs) / small.table_archs < 0.15
    assert full.whole and len(full.archs) == full.table_archs
    assert small.visible_seeds == full.visible_seeds == [0, 1, 2]


def test_view_answers_the_visible_seed_only_and_scores_on_the_target():
    bench = synthetic.SyntheticBench("synth-a/resnet", seed_share=0.2)
    sp = heldout.Space(bench, 2)
    target = heldout.HeldOutSeeds(bench, sp)
    archs = sp.archs[:50]
    for v in sp.visible_seeds:
        view = heldout.SearchView(bench, sp, v, target)
        for seed in (None, "mean", 0, 1, 2):  # whatever is asked, the visible seed answers
            np.testing.assert_allclose(view.query_many(archs, seed=seed), bench.query_many(archs, seed=v))
        np.testing.assert_allclose(view.test_many(archs), target.score(v)[:50])
        assert view.best()[1] == pytest.approx(target.score(v).max())
        outside = int(np.setdiff1d(bench.archs, sp.archs)[0])
        with pytest.raises(KeyError, match="outside the searched space"):
            view.query(outside)
        assert 0 <= heldout.noise_ceiling(view) < 0.2


def test_visible_seed_follows_the_run_and_is_matched_across_searchers(tmp_path):
    frames, timings, ctx = leaderboard.run_leaderboard(
        ["random", "akd"],
        pairs=["synth-a/resnet"],
        runs=6,
        budget={"queries": 15},
        progress=False,
        synthetic=True,
        synthetic_options={"seed_share": 0.2},
    )
    vis = frames.group_by(["searcher", "seed"]).agg(pl.col("visible_seed").first()).sort(["searcher", "seed"])
    a = vis.filter(pl.col("searcher") == "random")["visible_seed"].to_list()
    b = vis.filter(pl.col("searcher") == "akd")["visible_seed"].to_list()
    assert a == b and len(set(a)) > 1
    fin = lb_claims.finals(frames, ctx)
    assert fin.height == 12 and fin["regret"].min() >= 0
    # a run's regret is the target's best minus the incumbent's target value, the visible seed unread
    sp = heldout.Space(synthetic.SyntheticBench("synth-a/resnet", seed_share=0.2), 2)
    assert ctx["spaces"]["heldout_seeds"]["synth-a/resnet"]["archs"] == len(sp.archs)


def test_dass_meta_seed_follows_the_run():
    s = make("dass")
    assert s.run_options(7) == {"meta_seed": 7}
    assert leaderboard._make("dass", {}, 7).config["meta_seed"] == 7
    assert leaderboard._make("dass", {"meta_seed": 1}, 7).config["meta_seed"] == 1  # the user's choice wins


def test_dass_paper_beside_dass_shares_meta_training_and_queries_once():
    from danas_bench.search.baselines import dass as dass_mod

    dass_mod._CACHE.clear()
    frames, timings, ctx = leaderboard.run_leaderboard(
        ["random", "dass", "dass_paper"],
        pairs=["synth-a/resnet", "synth-a/mlp"],
        runs=2,
        budget={"queries": 8},
        options={"dass": {"meta_steps": 20}, "dass_paper": {"meta_steps": 20}},
        progress=False,
        synthetic=True,
        synthetic_options={"datasets": ["synth-a", "synth-b"], "seed_share": 0.2},
    )
    fin = lb_claims.finals(frames, ctx)
    paper = fin.filter(pl.col("searcher") == "dass_paper")
    assert paper.height == 4 and (paper["queries"] == 1).all()  # 2 pairs x 2 runs, the pick alone
    assert (fin.filter(pl.col("searcher") == "dass")["queries"] == 8).all()
    assert len(dass_mod._CACHE) == 2  # one meta-training per run, shared by both modes and both teachers
    specs = {c["claim"] for c in lb_claims.claim_specs(ctx)}
    assert "dass_paper beats random search" in specs and any(c.startswith("DaSS: querying") for c in specs)


def test_autokd_fidelities_on_the_leaderboard_are_paid_by_epochs(tmp_path):
    frames, timings, ctx = leaderboard.run_leaderboard(
        ["random", "autokd"],
        pairs=["synth-a/resnet"],
        runs=2,
        budget={"queries": 6, "fractional_queries": True},
        options={"autokd": {"n_init": 4, "n_candidates": 128}},
        progress=False,
        synthetic=True,
        synthetic_options={"seed_share": 0.2},
    )
    ak = frames.filter(pl.col("searcher") == "autokd")
    assert ak["epoch"].null_count() < ak.height  # low-epoch rungs were asked ...
    fin = lb_claims.finals(frames, ctx)
    assert (fin["queries"] <= 6 + 1e-9).all()  # ... and paid in proportion: more asks than queries
    assert np.isfinite(fin["anytime"].to_numpy()).all()  # (before its first full answer: a random pick)
    assert ak.group_by("seed").len()["len"].min() > 6
    payload = lb_report.write_report(frames, timings, ctx, tmp_path / "leaderboard.md", None)
    assert "fractional_queries True" in (tmp_path / "leaderboard.md").read_text()
    assert all(np.isfinite(r["regret_mean"]) for r in payload["pairs"]["synth-a/resnet"])


# --- overlay isolation on the real tables ---------------------------------------------------------------


def _real_pair():
    from danas_bench.query.bench import discover

    pairs = sorted(discover())
    if not pairs:
        pytest.skip("no shipped tables")
    return next((p for p in pairs if p.startswith("digits/") and not p.endswith("/none")), pairs[0])


def test_scoring_reads_shipped_rows_only(tmp_path):
    from danas_bench.query import bench as bench_mod

    pair = _real_pair()
    b = bench_mod.open(pair, overlay_dir=tmp_path / "overlay", fallback="error")
    sp = heldout.Space(b, 2)
    target = heldout.HeldOutSeeds(b, sp)
    before = {v: target.score(v).copy() for v in sp.visible_seeds}
    view = heldout.SearchView(b, sp, sp.visible_seeds[0], target)
    q_before = view.query_many(sp.archs[:20])
    # a user's live rows: a new seed (9) for some architectures, with absurd accuracies
    recs = []
    for a in sp.archs[:20]:
        r = dict(b.record(int(a), seed=0))
        r.update(seed=9, test_acc=0.0, valid_acc=1.0, source="live")
        recs.append(r)
    b.overlay.append(recs, b.recipe.to_dict(), dict(b.kd.__dict__))
    b.refresh()
    assert 9 in set(b.frame()["seed"].to_list())  # the overlay is really read by the bench
    sp2 = heldout.Space(b, 2)
    t2 = heldout.HeldOutSeeds(b, sp2)
    np.testing.assert_array_equal(sp2.archs, sp.archs)
    assert sp2.seeds == sp.seeds
    for v, s in before.items():
        np.testing.assert_array_equal(t2.score(v), s)
    v2 = heldout.SearchView(b, sp2, sp.visible_seeds[0], t2)
    np.testing.assert_array_equal(v2.query_many(sp.archs[:20]), q_before)
    shutil.rmtree(tmp_path / "overlay", ignore_errors=True)


# --- fail fast ----------------------------------------------------------------------------------------------


def test_preflight_fails_before_any_run(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_optuna(name, *a, **k):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    ran = []
    monkeypatch.setattr(leaderboard, "_task", lambda *a, **k: ran.append(a) or [])
    with pytest.raises(leaderboard.PreflightError, match="optuna_tpe cannot run on .*ImportError"):
        leaderboard.run_leaderboard(
            ["random", "optuna_tpe"],
            pairs=["synth-a/resnet"],
            runs=2,
            budget={"queries": 5},
            synthetic=True,
            progress=False,
        )
    assert ran == []


# --- statistics on a known truth ----------------------------------------------------------------------------


def test_holm_and_paired_test():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    assert stats.paired_test(np.zeros(20)) == 1.0
    assert stats.paired_test(np.full(20, 0.5)) < 1e-3
    assert stats.paired_test(np.full(20, 0.5), margin=1.0) > 0.5
    lo, hi = stats.bootstrap_ci(np.arange(20.0))
    assert lo < 9.5 < hi


def test_detectable_gain_is_what_the_paired_test_detects_80_percent_of_the_time():
    """At a true mean gain equal to detectable_gain (spread 1, 20 matched runs, alpha 0.05), the sign-flip
    test rejects in about 80% of repeats; at half of it, far less often."""
    sd, n = 1.0, 20
    d = np.r_[1.0, -1.0].repeat(n // 2)  # t quantiles of 19 degrees of freedom: 1.7291 and 0.8610
    assert stats.detectable_gain(d) == pytest.approx((1.7291 + 0.8610) * d.std(ddof=1) / np.sqrt(n), rel=1e-4)
    rng = np.random.default_rng(1)
    true = (1.729 + 0.861) * sd / np.sqrt(n)
    power = lambda gain: np.mean(  # noqa: E731
        [stats.paired_test(rng.normal(gain, sd, n), n_perm=2000, key=f"p{i}") < 0.05 for i in range(300)]
    )
    assert 0.7 < power(true) < 0.9
    assert power(true / 2) < 0.45
    # at Holm's strictest level over three pairs
    strict = stats.detectable_gain(rng.normal(0, sd, 4000)[:n], alpha=0.05 / 3)
    gain = (2.2944 + 0.8610) * sd / np.sqrt(n)  # t quantiles of 19 degrees of freedom at 1 - 0.05/3 and 0.8
    assert strict == pytest.approx(gain, rel=0.4)  # its spread is a sample's
    hits = [stats.paired_test(rng.normal(gain, sd, n), n_perm=2000, key=f"s{i}") < 0.05 / 3 for i in range(300)]
    assert 0.7 < np.mean(hits) < 0.9
    assert np.isnan(stats.detectable_gain([0.3])) and np.isnan(stats.detectable_gain(np.zeros(20)))
    assert stats.detectable_gain(np.arange(4.0)) == np.inf  # 4 runs: the smallest p is 1/16 > 0.05


def _regrets(view, pool, queries, runs, seed_offset):
    out = []
    for r in runs:
        f = run(make("random"), view[r], {"queries": queries}, r + seed_offset, pool=pool[r])
        out.append(100 * float(f["regret"][-1]))
    return np.array(out)


def test_known_truth_better_searcher_detected_identical_not_claimed_different():
    """Random search with 6x the queries is truly better; two random searches differing only in their RNG
    are identical. Over many repeats (each: 20 matched runs on 3 pairs, Holm across pairs) the better one
    must be detected and the identical ones not claimed different (two-sided), each in >= 95% of repeats."""
    pairs = ["synth-a/resnet", "synth-b/resnet", "synth-c/mlp"]
    benches = {p: synthetic.SyntheticBench(p, seed_share=0.1) for p in pairs}
    spaces = {p: heldout.Space(b, 2) for p, b in benches.items()}
    targets = {p: heldout.HeldOutSeeds(benches[p], spaces[p]) for p in pairs}
    repeats, n = 60, 20
    detected = different = 0
    for k in range(repeats):
        runs = list(range(k * n, (k + 1) * n))
        p_better, p_same = [], []
        for p in pairs:
            views = {
                r: heldout.SearchView(benches[p], spaces[p], heldout.visible_seed(spaces[p], r), targets[p])
                for r in runs
            }
            pools = {r: LazyPool([p], lambda q: None, {p: views[r]}) for r in runs}
            many = _regrets(views, pools, 30, runs, 0)
            few = _regrets(views, pools, 5, runs, 10**6)
            same = _regrets(views, pools, 5, runs, 2 * 10**6)
            p_better.append(stats.paired_test(few - many, key=f"b{k}{p}"))
            up, down = stats.paired_test(few - same, key=f"u{k}{p}"), stats.paired_test(same - few, key=f"d{k}{p}")
            p_same.append(min(1.0, 2 * min(up, down)))
        detected += bool((stats.holm(p_better) < stats.ALPHA).all())
        different += bool((stats.holm(p_same) < stats.ALPHA).any())
    assert detected >= 0.95 * repeats, f"better searcher detected on every pair in {detected}/{repeats} repeats"
    assert different <= 0.05 * repeats, f"identical searchers claimed different in {different}/{repeats} repeats"


# --- the report -----------------------------------------------------------------------------------------------


def test_report_carries_runs_ci_scoring_and_holm(tmp_path):
    frames, timings, ctx = leaderboard.run_leaderboard(
        ["random", "random_none", "evolution", "evolution_kd", "akd"],
        pairs="all",
        runs=20,
        budget={"queries": 20, "max_share": 0.25},
        synthetic=True,
        progress=False,
        synthetic_options={"datasets": ["synth-a"], "seed_share": 0.1},
    )
    out = tmp_path / "lb" / "leaderboard.md"
    shipped = tmp_path / "old.json"
    payload = lb_report.write_report(frames, timings, ctx, out, tmp_path / "fig", shipped=shipped)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert "expected" in ctx["notes"] and ctx["scorings"] == ["heldout_seeds"]
    for pair, rows in doc["pairs"].items():
        for r in rows:
            assert r["runs"] == 20 and r["scoring"] == "heldout_seeds"
            assert r["fallbacks_mean"] >= 0 and 0 <= r["fallback_share"] <= 1
            if r["searcher"].startswith("random"):
                assert r["fallbacks_max"] == 0  # random search has nothing to fall back from
            lo, hi = r["regret_ci95"]
            assert lo <= r["regret_mean"] <= hi
        if not pair.endswith("/none"):
            assert {r["searcher"] for r in rows} >= {"evolution_kd", "random_none"}
        assert doc["references"][pair]["heldout_seeds"]["noise_ceiling"]["runs"] == 20
    assert doc["claims"] and all({"p_holm", "holds", "threshold", "runs"} <= set(c) for c in doc["claims"])
    assert all(c["p_holm"] >= c["p"] for c in doc["claims"])
    # each test's detectable gain is the formula on its own matched differences, at alpha / pairs tested
    fin = lb_claims.finals(frames, ctx)
    c = next(c for c in doc["claims"] if c["baseline"] == "random" and c["measure"].startswith("final"))
    per = {
        name: fin.filter(
            (pl.col("pair") == c["pair"]) & (pl.col("scoring") == c["scoring"]) & (pl.col("searcher") == name)
        ).sort("run")["regret"]
        for name in (c["method"], c["baseline"])
    }
    d = (per[c["baseline"]] - per[c["method"]]).to_numpy()
    family = sum(1 for x in doc["claims"] if (x["claim"], x["scoring"]) == (c["claim"], c["scoring"]))
    assert c["detectable"] == pytest.approx(stats.detectable_gain(d, stats.ALPHA / family))
    assert "Detectable gain" in out.read_text()
    text = out.read_text()
    assert "## Claims" in text and "noise ceiling" in text and "p_holm" in text
    assert payload["reproduces"] is None  # no shipped leaderboard to compare with
    shipped.write_text(out.with_suffix(".json").read_text())
    again = lb_report.write_report(frames, timings, ctx, tmp_path / "lb2" / "leaderboard.md", None, shipped=shipped)
    assert again["reproduces"]["inside_ci"] == again["reproduces"]["compared"] > 0
    # several boards (make run's v1 and v2): each row against the board of its pair's recipe, an unreadable
    # board skipped; a board of another recipe compares nothing
    other = json.loads(shipped.read_text())
    for tv in other["context"]["tables"].values():
        tv["recipe_id"] = "0123456789abcdef"
    (tmp_path / "other.json").write_text(json.dumps(other))
    boards = [tmp_path / "missing.json", tmp_path / "other.json", shipped]
    both = lb_report.write_report(frames, timings, ctx, tmp_path / "lb3" / "leaderboard.md", None, shipped=boards)
    assert both["reproduces"]["compared"] == again["reproduces"]["compared"]
    assert both["reproduces"]["shipped"] == f"{tmp_path / 'other.json'}, {shipped}"
    alone = lb_report.write_report(
        frames, timings, ctx, tmp_path / "lb4" / "leaderboard.md", None, shipped=[tmp_path / "other.json"]
    )
    assert alone["reproduces"]["compared"] == 0
    assert tables_dir().resolve() not in out.resolve().parents


def test_time_view_reads_the_same_runs_at_random_search_median_spend():
    """The simulated-time view: per pair, the budget is the median simulated seconds random search spends;
    a run's regret there is its incumbent's once that much time is spent, and under a budget no run
    exceeds it equals the final regret."""
    frames, timings, ctx = leaderboard.run_leaderboard(
        ["random", "evolution"],
        pairs="all",
        runs=6,
        budget={"queries": 15, "max_share": 0.25},
        synthetic=True,
        progress=False,
        synthetic_options={"datasets": ["synth-a"], "seed_share": 0.1},
    )
    tb = lb_claims.time_budgets(frames)
    for (pair, sc), g in frames.group_by(["pair", "scoring"]):
        spent = g.filter(pl.col("searcher") == "random").group_by("seed").agg(pl.col("cum_seconds").max())
        assert tb[sc][pair] == pytest.approx(float(spent["cum_seconds"].median()))
        # each scoring's runs spend exactly its own query cap (held-out scoring searches a smaller space)
        q = ctx["budgets"][sc][pair]["queries"]
        assert g.group_by("seed").agg(pl.col("cum_queries").max())["cum_queries"].max() <= q
        assert q == min(15, max(1, int(0.25 * ctx["spaces"][sc][pair]["archs"])))
    fin = lb_claims.finals(frames, ctx)
    assert fin["regret_time"].is_not_nan().all()
    for (pair, name, r), g in frames.group_by(["pair", "searcher", "seed"]):
        end = float(g["cum_seconds"].max())
        final = fin.filter((pl.col("pair") == pair) & (pl.col("searcher") == name) & (pl.col("run") == r))
        assert lb_claims._regret_at(g, end, None) == pytest.approx(final["regret"][0])
        assert lb_claims._regret_at(g, 0.0, 7.5) == 7.5  # nothing answered yet: the uniform-pick regret
    summary = lb_claims.summarize(fin, timings)
    assert {"regret_time_mean", "regret_time_ci95"} <= set(summary.columns)


def test_each_scoring_keeps_its_own_query_cap_and_time_budget():
    """fashion-mnist v1 holds seeds 1-2 on 50 of its 500 cells: held-out scoring searches those 50
    (max_share 0.25 caps it at 12 queries), the expected view all 500 (30). The budgets, the anytime
    window, the time view and the report's header must keep the two apart, not let one overwrite the other.
    Pinned to v1 (fashion-mnist serves v2, which has three seeds on all 500 cells, since session 25)."""
    frames, _, ctx = leaderboard.run_leaderboard(
        ["random"],
        pairs=["fashion-mnist/none"],
        runs=3,
        budget={"queries": 30, "max_share": 0.25},
        progress=False,
        recipe="v1",
    )
    pair = "fashion-mnist/none"
    assert {sc: b[pair]["queries"] for sc, b in ctx["budgets"].items()} == {"heldout_seeds": 12, "expected": 30}
    spent = frames.group_by("scoring").agg(pl.col("cum_queries").max())
    assert dict(spent.iter_rows()) == {"heldout_seeds": 12.0, "expected": 30.0}
    tb = lb_claims.time_budgets(frames)
    assert tb["heldout_seeds"][pair] < tb["expected"][pair]
    assert lb_report._pair_queries(ctx["budgets"]) == [f"{pair} 12 (heldout_seeds), 30 (expected) queries"]
    assert lb_report._pair_queries({"a": {pair: {"queries": 30}}, "b": {pair: {"queries": 30}}}) == [
        f"{pair} 30 queries"
    ]


def test_leaderboard_on_a_recipe_version_runs_on_its_tables_and_is_not_compared_with_v1(tmp_path, capsys):
    """``recipe=v2``: only the pairs with a v2 table, each on it; the shipped (v1) leaderboard is not a
    reference for it, so no row is compared."""
    from danas_bench.core.pairs import RETIRED
    from danas_bench.core.recipe import RECIPE_DIR, recipe_for
    from danas_bench.query.catalog import discover

    v2 = {p.stem[: -len("-v2")] for p in RECIPE_DIR.glob("*-v2.yaml")}  # the datasets with a v2 recipe

    def retired_where_served(pair: str) -> bool:  # digits/mlp: left out of the version its dataset serves
        ds, teacher = pair.split("/")
        return teacher in RETIRED.get(ds, {}) and recipe_for(ds) == recipe_for(ds, "v2")

    have = {
        p
        for p, found in discover().items()
        if p.split("/")[0] in v2
        and recipe_for(p.split("/")[0], "v2").recipe_id in found
        and not retired_where_served(p)
    }
    if not have:
        pytest.skip("no shipped v2 table")
    frames, timings, ctx = leaderboard.run_leaderboard(
        ["random"],
        pairs="all",
        runs=[0],
        budget={"queries": 5},
        progress=False,
        scorings=["heldout_seeds"],
        recipe="v2",
    )
    assert set(ctx["tables"]) == have
    for p, tv in ctx["tables"].items():
        assert tv["recipe_id"] == recipe_for(p.split("/")[0], "v2").recipe_id
    assert set(frames["pair"].unique().to_list()) == have
    shipped = tables_dir().parent / "docs" / "leaderboard.json"
    payload = lb_report.write_report(frames, timings, ctx, tmp_path / "leaderboard.md", None, shipped=shipped)
    assert payload["reproduces"] is None or payload["reproduces"]["compared"] == 0
    with pytest.raises(ValueError, match="no table of recipe 'v9'"):
        leaderboard.open_pool({"recipe": "v9"})
    from danas_bench import cli  # the command line key is recipe_id (`recipe` is Hydra's recipe group)

    args = ["leaderboard", "recipe_id=v9", "searchers=[random]", "runs=1", f"out={tmp_path}/lb.md", "figures=null"]
    assert cli.main([*args, "compare=null", "progress=false"], one_line_errors=True) != 0
    assert "no table of recipe 'v9'" in capsys.readouterr().err

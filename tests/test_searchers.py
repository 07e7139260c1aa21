"""The ask/tell protocol, the runner, the six baselines, the Optuna bridge and the leaderboard.

Everything runs on :mod:`danas_bench.search.synthetic` benches (made-up but structured accuracies over the
real NAS-Bench-201 space), so these tests need no tables and take seconds. The tiny bench holds the
64 architectures whose edges are all 1x1 or 3x3 convolutions (no two of them isomorphic) and has no
seed noise, so its optimum is well defined and reachable by every searcher.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from danas_bench.core import space
from danas_bench.core.budget import Budget, BudgetExhausted
from danas_bench.search import TRAJECTORY_SCHEMA, Ask, Problem, Searcher, final, run, synthetic
from danas_bench.search.baselines import NAMES, SIX, make

TINY_OPS = ("nor_conv_1x1", "nor_conv_3x3")
# cheap settings for the model-based searchers on the tiny bench
FAST = {"trade": {"n_init": 6}, "autokd": {"n_init": 6, "n_candidates": 256}, "dass": {"meta_steps": 100}}
SEARCHERS = SIX + ("optuna_tpe",)


@pytest.fixture(scope="module")
def tiny_pool():
    return synthetic.open_all(("synth-a", "synth-b"), ("resnet", "mlp", "none"), ops=TINY_OPS, noise=0.0)


@pytest.fixture(scope="module")
def pool():
    return synthetic.open_all(("synth-a", "synth-b"))


def _make(name, **kw):
    return make(name, **{**FAST.get(name, {}), **kw})


def _run(name, bench, budget, seed, pool, **kw):
    return run(_make(name, **kw), bench, budget, seed, pool=pool)


# --- the synthetic bench --------------------------------------------------------------------------------


def test_synthetic_bench_surface(pool):
    b = pool["synth-a/resnet"]
    assert len(b.archs) == space.N_CANONICAL and set(b.seeds) == {0, 1, 2}
    a = space.EXAMPLE
    # every input form and isomorphic indices agree
    assert b.query(a, seed=1) == b.query(space.to_index(a), seed=1) == b.query(list(space.parse(a)), seed=1)
    assert b.query(space.to_index(a), seed=0) == b.query(int(space.canonical(a)), seed=0)
    assert 0 < b.query(a, epoch=1, seed="mean") < b.query(a, seed="mean")
    with pytest.raises(ValueError, match="bench.test"):
        b.query(a, "test_acc")
    arch, best = b.best()
    assert best == pytest.approx(b.test(arch)) and best >= b.test_many(b.archs).max() - 1e-12
    budget = Budget(max_queries=2)
    b.query(a, budget=budget)
    b.query(a, epoch=5, budget=budget)
    assert budget.spent_queries == 2
    assert budget.spent_seconds == pytest.approx(1.5 * b.cost(a))
    from danas_bench.core.budget import BudgetExhausted

    with pytest.raises(BudgetExhausted):
        b.query(a, budget=budget)
    assert set(b.info(a)) >= {"params", "flops", "latency_ms"}
    assert b.frame().height == len(b.archs) * 3
    # KD changes the ranking: the teacher and none pairs of a dataset agree only partly
    from scipy.stats import kendalltau

    tau = kendalltau(b.test_many(b.archs), pool["synth-a/none"].test_many(b.archs)).statistic
    assert 0.3 < tau < 0.95


def test_tiny_bench(tiny_pool):
    b = tiny_pool["synth-a/resnet"]
    assert len(b.archs) == 64
    assert set(np.unique(space.ops_matrix(b.archs))) == {2, 3}
    assert b.best("test_acc")[0] == b.best("valid_acc")[0]  # noise-free: valid and test agree


# --- the runner and the protocol ------------------------------------------------------------------------


class Fixed(Searcher):
    """Asks a fixed list of architectures (ints: the protocol's shorthand)."""

    name = "fixed"
    defaults = {"archs": ()}

    def setup(self, problem, rng):
        self.todo = list(self.archs)

    def ask(self):
        return self.todo.pop(0) if self.todo else None


def test_runner_trajectory(pool):
    b = pool["synth-a/resnet"]
    archs = [int(a) for a in b.archs[:5]] + [space.to_index(space.EXAMPLE)]
    f = run(Fixed(archs=archs), b, {"queries": 100}, seed=3, pool=pool)
    assert list(f.columns) == list(TRAJECTORY_SCHEMA) and f.height == 6  # the searcher stopped asking
    assert f["step"].to_list() == list(range(1, 7)) and f["cum_queries"].to_list() == list(range(1, 7))
    assert f["arch_index"][-1] == space.canonical(space.EXAMPLE)  # asks are canonicalised
    assert np.allclose(np.cumsum(f["cost_seconds"].to_numpy()), f["cum_seconds"].to_numpy())
    inc_valid = f["incumbent_valid"].to_numpy()
    assert (np.diff(inc_valid) >= 0).all() and inc_valid[-1] == f["value"].max()
    last = f.row(-1, named=True)
    assert last["incumbent_test"] == pytest.approx(b.test(last["incumbent"]))
    assert last["regret"] == pytest.approx(b.best()[1] - last["incumbent_test"])
    assert (f["regret"].to_numpy() >= 0).all()
    assert set(f["searcher"]) == {"fixed"} and set(f["pair"]) == {"synth-a/resnet"} and set(f["seed"]) == {3}
    fin = final(f)
    assert fin["queries_to_final"] == f.filter(pl.col("arch_index") == fin["incumbent"])["cum_queries"][0]


def test_problem_hides_test_metrics_and_own_validation(pool):
    b = pool["synth-a/resnet"]
    p = Problem(b, pool)
    for hidden in ("test", "test_many", "best", "query", "frame"):
        assert not hasattr(p, hidden)
    with pytest.raises(PermissionError):
        p.validation("synth-a/resnet")
    archs, vals = p.validation("synth-b/mlp")  # other pairs: readable, for meta-learning
    assert len(archs) == len(vals) == space.N_CANONICAL
    assert p.latency().shape == (len(p.archs),) and p.position(p.archs[7]) == 7


def test_default_pool_is_the_benches_beside(pool):
    """Without a pool, run() reads the pairs beside the bench (for real tables: every table under its root)."""
    b = synthetic.SyntheticBench("synth-b/resnet", ops=TINY_OPS)
    s = make("evolution")
    f = run(s, b, 8, seed=0)
    assert set(f["queried_pair"]) == {"synth-b/none"}
    assert s.problem.pairs == sorted(f"{d}/{t}" for d in ("synth-a", "synth-b") for t in ("mlp", "none", "resnet"))


def test_runner_refuses_other_datasets(pool):
    class Cheat(Searcher):
        name = "cheat"

        def ask(self):
            return Ask(int(self.problem.archs[0]), pair="synth-b/none")

    with pytest.raises(ValueError, match="only pairs of synth-a"):
        run(Cheat(), pool["synth-a/resnet"], 5, seed=0, pool=pool)


def test_unknown_options_and_names():
    with pytest.raises(TypeError, match="valid options"):
        make("trade", n_inti=3)
    with pytest.raises(KeyError, match="unknown searcher"):
        make("nope")
    assert make("nas_without_kd").name == "evolution"
    assert set(SIX) <= set(NAMES)


# --- every searcher ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in SEARCHERS if n != "evolution"])
def test_finds_the_optimum_of_the_tiny_bench(name, tiny_pool):
    b = tiny_pool["synth-a/resnet"]
    # (AutoKD's Hyperband rungs stop most students early: no budget limit, it stops when all are trained)
    f = _run(name, b, {"queries": len(b.archs)} if name != "autokd" else {}, 0, tiny_pool)
    assert f.select("arch_index", "epoch").n_unique() == f.height  # never pays twice for one architecture
    full = f.filter(pl.col("epoch").is_null())  # (at one epoch)
    assert full["arch_index"].n_unique() == full.height == len(b.archs) or name != "autokd"
    last = f.row(-1, named=True)
    assert last["incumbent"] == b.best()[0] and last["regret"] == pytest.approx(0.0, abs=1e-12)


def test_evolution_finds_the_no_kd_optimum(tiny_pool):
    """NAS-without-KD searches the `none` pair: it finds that pair's best, scored by KD test accuracy."""
    b, none = tiny_pool["synth-a/resnet"], tiny_pool["synth-a/none"]
    f = _run("evolution", b, {"queries": len(b.archs)}, 0, tiny_pool)
    assert set(f["queried_pair"]) == {"synth-a/none"}
    last = f.row(-1, named=True)
    assert last["incumbent"] == none.best("valid_acc")[0]
    assert last["incumbent_test"] == pytest.approx(b.test(last["incumbent"]))  # scored on the KD pair
    assert last["regret"] == pytest.approx(b.best()[1] - b.test(last["incumbent"]))


@pytest.mark.parametrize("name", SEARCHERS)
def test_respects_the_budget(name, pool):
    b = pool["synth-b/mlp"]
    f = _run(name, b, {"queries": 15}, 1, pool)
    assert f.height == 15 and f["cum_queries"].max() == 15
    secs = 6 * float(np.median([b.cost(int(a)) for a in b.archs[:200]]))
    budget = Budget(max_seconds=secs)
    g = run(_make(name), b, budget, 1, pool=pool)
    assert 0 < g.height < 40 and g["cum_seconds"].max() <= secs * (1 + 1e-9)
    assert budget.spent_seconds == pytest.approx(g["cum_seconds"].max())
    assert budget.spent_queries == g.height


@pytest.mark.parametrize("name", SEARCHERS)
def test_reproducible_under_a_fixed_seed(name, pool):
    b = pool["synth-a/mlp"]
    cols = [c for c in TRAJECTORY_SCHEMA if c != "wall_seconds"]
    f1 = _run(name, b, {"queries": 15}, 7, pool).select(cols)
    f2 = _run(name, b, {"queries": 15}, 7, pool).select(cols)
    assert f1.equals(f2)
    f3 = _run(name, b, {"queries": 15}, 8, pool).select(cols)
    assert not f1.equals(f3)


def test_model_based_searchers_beat_random_on_average(pool):
    """Not a claim about the methods (docs/searchers.md has the real numbers): a sanity check that
    the models are wired up the right way round (a sign error would lose to random search)."""
    b = pool["synth-a/resnet"]
    out = {}
    kw = {"dass": {"exclude_same_dataset": False}}  # two datasets only: give DaSS its dataset's other teachers
    for name in ("random", "trade", "dass"):
        out[name] = np.mean(
            [final(_run(name, b, {"queries": 40}, s, pool, **kw.get(name, {})))["regret"] for s in range(3)]
        )
    assert out["trade"] < out["random"] and out["dass"] < out["random"]


# --- details of single methods ----------------------------------------------------------------------------


def test_akd_reward_is_latency_aware(pool):
    s = make("akd", target_latency_ms=0.1)
    run(s, pool["synth-a/resnet"], 3, seed=0, pool=pool)
    p = s.problem
    fast, slow = int(np.argmin(p.latency())), int(np.argmax(p.latency()))
    lat = p.latency()
    assert s.reward(int(p.archs[fast]), 0.9) > 0.9 > s.reward(int(p.archs[slow]), 0.9)
    assert s.reward(int(p.archs[slow]), 0.9) == pytest.approx(0.9 * (lat[slow] / 0.1) ** -0.07)


def test_autokd_off_table_kd_settings(pool):
    b = pool["synth-a/resnet"]
    f = _run("autokd", b, {"queries": 14}, 0, pool, kd_search=True)
    t, a = f["kd_temperature"].to_numpy(), f["kd_alpha"].to_numpy()
    assert np.isfinite(t).all() and ((1.0 <= t) & (t <= 20.0)).all() and ((0.1 <= a) & (a <= 1.0)).all()
    r = f.row(int(np.argmax(f["value"].to_numpy())), named=True)  # the incumbent carries its KD setting
    assert f["incumbent_test"][-1] == pytest.approx(
        b.test(r["arch_index"], kd_temperature=r["kd_temperature"], kd_alpha=r["kd_alpha"])
    )
    g = _run("autokd", pool["synth-a/none"], {"queries": 12}, 0, pool, kd_search=True)
    assert g["kd_temperature"].null_count() == g.height  # no KD to tune without a teacher


def test_autokd_hyperband_brackets_promote_the_best_and_pay_by_epochs(pool):
    from danas_bench.search.baselines.autokd import brackets

    b = pool["synth-a/resnet"]  # 10 epochs: brackets (9 x 1 -> 3 x 3 -> 1 x 10), (5 x 3 -> 1 x 10), (3 x 10)
    assert brackets(10) == [[(9, 1), (3, 3), (1, 10)], [(5, 3), (1, 10)], [(3, 10)]]
    s = _make("autokd")
    f = run(s, b, {"queries": 6, "fractional_queries": True}, 0, pool=pool)
    ep = f["epoch"].to_list()
    assert ep[:13] == [1] * 9 + [3] * 3 + [None] and ep[13:19] == [3] * 5 + [None]
    v, a = f["value"].to_numpy(), f["arch_index"].to_numpy()
    assert set(a[9:12]) == set(a[:9][np.argsort(-v[:9])[:3]])  # the best third of the 1-epoch rung
    assert a[12] == a[9:12][np.argmax(v[9:12])]  # the best of the 3-epoch rung
    # charged by epochs: a 1-epoch query is a tenth of a query and of the architecture's time
    assert f["cum_queries"][8] == pytest.approx(0.9)
    assert f["cost_seconds"][0] == pytest.approx(b.cost(int(a[0])) / 10)
    assert f["cum_queries"].max() <= 6 + 1e-9 and f.height > 6  # more students seen than full queries paid
    # only full-epoch answers make incumbents
    assert f.filter(pl.col("epoch").is_not_null())["incumbent"].null_count() == 12
    # the default budget counts every query as one: the same run stops after 6 asks
    assert _run("autokd", b, {"queries": 6}, 0, pool).height == 6
    plain = _run("autokd", b, {"queries": 6}, 0, pool, fidelity="none")
    assert plain["epoch"].null_count() == plain.height


def test_fractional_query_budget():
    bud = Budget(max_queries=1, fractional_queries=True)
    for _ in range(3):
        bud.charge(1.0, share=0.3)
    assert bud.spent_queries == pytest.approx(0.9) and bud.affordable(0.0, share=0.1)
    assert not bud.affordable(0.0, share=0.2)
    with pytest.raises(BudgetExhausted):
        bud.charge(0.0)
    plain = Budget(max_queries=1)
    plain.charge(1.0, share=0.3)  # without the flag every query counts one
    assert plain.spent_queries == 1 and not plain.affordable(0.0, share=0.1)


def test_trade_trust_region_rules(pool):
    s = _make("trade", failure_tol=2, length_init=1.0)
    run(s, pool["synth-a/resnet"], 40, seed=0, pool=pool)
    assert s.restarts >= 1  # 1 -> 0.5 -> 0.25 < length_min: restarted


def test_dass_meta_trains_on_the_other_pairs_only(pool):
    s = _make("dass", exclude_same_dataset=False)
    run(s, pool["synth-a/resnet"], 12, seed=0, pool=pool)
    assert "synth-a/resnet" not in s.state["tasks"] and len(s.state["tasks"]) == 5
    unseen = _make("dass")  # default: "unseen" means other datasets, as in the paper
    assert unseen._tasks(s.problem) == ["synth-b/mlp", "synth-b/none", "synth-b/resnet"]
    # the meta-model alone already ranks the unseen pair better than chance
    from scipy.stats import kendalltau

    truth = pool["synth-a/resnet"].query_many(s.problem.archs, seed="mean")
    assert kendalltau(s.prior, truth).statistic > 0.2
    assert kendalltau(s.scores, truth).statistic > 0.2


def test_dass_without_another_dataset_fails_before_any_run(pool):
    """A pool of one dataset gives DaSS nothing to meta-train on: preflight says so (the leaderboard's
    recipe=v2 pool held digits alone when this was found)."""
    one = {p: b for p, b in pool.items() if p.startswith("synth-a/")}
    with pytest.raises(ValueError, match="meta-trains on other pairs' tables.*synth-a/mlp"):
        _make("dass").preflight(Problem(one["synth-a/resnet"], one))
    _make("dass", exclude_same_dataset=False).preflight(Problem(one["synth-a/resnet"], one))  # its own teachers


def test_dass_paper_mode_is_the_meta_models_top1_without_a_student_queried_first(pool):
    bench = pool["synth-a/resnet"]
    paper = _make("dass_paper", meta_steps=100)
    f = run(paper, bench, 12, seed=0, pool=pool)
    zero = space.zero_cells(paper.problem.archs)
    pick = int(paper.problem.archs[int(np.argmax(np.where(zero, -np.inf, paper.prior)))])
    assert f.height == 1 and int(f["arch_index"][0]) == pick  # one query: the pick itself, then it stops
    querying = _make("dass")
    run(querying, bench, 12, seed=0, pool=pool)
    assert querying.state is paper.state  # the same meta-training (cached): only the search differs
    test = bench.test_many(paper.problem.archs)
    assert bench.test(pick) > np.median(test)  # the transferred predictor picks better than chance
    with pytest.raises(ValueError, match="mode"):
        run(_make("dass", mode="papers"), bench, 2, seed=0, pool=pool)


@pytest.mark.parametrize("name", ["evolution", "optuna_tpe"])
def test_random_fallbacks_are_counted(name, tiny_pool):
    b = tiny_pool["synth-b/resnet"]
    s = _make(name)
    f = run(s, b, {"queries": len(b.archs)}, 0, pool=tiny_pool)
    # a tiny space searched to the end: the method runs out of new children / trials and falls back
    assert 0 < s.fallbacks <= f.height
    assert s.fallbacks == sum(a.fallback for a, _ in s.history)  # answered asks only
    if name == "evolution":  # its first children are its own: no fallback yet, and the count resets
        run(s, b, 12, 0, pool=tiny_pool)
        assert s.fallbacks == 0


# --- the Optuna bridge ------------------------------------------------------------------------------------


def test_optuna_bridge_samplers(tiny_pool):
    import optuna

    b = tiny_pool["synth-b/resnet"]
    for opts in (
        {"sampler": "nsga2"},
        {"sampler": "random"},
        {"sampler": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)},
    ):
        f = run(make("optuna", **opts), b, {"queries": len(b.archs)}, 0, pool=tiny_pool)
        assert f.height == len(b.archs) and f["regret"][-1] == pytest.approx(0.0, abs=1e-12)


def test_optuna_bridge_cmaes(tiny_pool):
    pytest.importorskip("cmaes")
    b = tiny_pool["synth-b/resnet"]
    f = run(make("optuna_cmaes"), b, {"queries": 20}, 0, pool=tiny_pool)
    assert f.height == 20 and f["arch_index"].n_unique() == 20


# --- the leaderboard -------------------------------------------------------------------------------------


def test_leaderboard_command(tmp_path):
    from danas_bench.cli import main

    out = tmp_path / "docs" / "leaderboard.md"
    rc = main(
        [
            "leaderboard",
            "synthetic=true",
            "searchers=[random,evolution,trade]",
            "runs=2",
            "budget.queries=12",
            "workers=1",
            "pairs=[synth-a/resnet,synth-b/none]",
            f"out={out}",
            f"figures={tmp_path / 'docs' / 'figures'}",
            "options={trade: {n_init: 5}}",
            "progress=false",
            f"trajectories={tmp_path / 'traj.parquet'}",
            "scorings=[heldout_seeds,expected]",
        ]
    )
    assert rc == 0
    text = out.read_text()
    for needle in (
        "### synth-a/resnet (`heldout_seeds`)",
        "### synth-b/none",
        "| random |",
        "| trade |",
        "| evolution |",
        "danas-bench 0.1.0",
        "Synthetic benches",
        "synthetic-1",
        "12 queries",
        '"n_init": 5',
        "noise ceiling",
        "## Claims",
        "`expected` skipped",
    ):
        assert needle in text, needle
    for pair in ("synth-a__resnet", "synth-b__none"):
        png = tmp_path / "docs" / "figures" / f"leaderboard_{pair}__heldout_seeds.png"
        assert png.stat().st_size > 10_000
        assert f"figures/leaderboard_{pair}__heldout_seeds.png" in text
    import json

    payload = json.loads(out.with_suffix(".json").read_text())
    rows = payload["pairs"]["synth-a/resnet"]
    assert {r["searcher"] for r in rows} == {"random", "evolution", "trade"} and all(r["runs"] == 2 for r in rows)
    assert pl.read_parquet(tmp_path / "traj.parquet").height == 2 * 3 * 2 * 12


def test_leaderboard_workers_match_in_process(tmp_path):
    from danas_bench.reports.leaderboard import run_leaderboard

    kw = dict(
        searchers=["random", "akd"],
        pairs=["synth-a/mlp"],
        runs=2,
        budget={"queries": 10},
        synthetic=True,
        progress=False,
    )
    a, _, _ = run_leaderboard(workers=1, **kw)
    b, _, _ = run_leaderboard(workers=2, **kw)
    key = ["searcher", "seed", "step"]
    cols = [c for c in TRAJECTORY_SCHEMA if c != "wall_seconds"]
    assert a.sort(key).select(cols).equals(b.sort(key).select(cols))


def test_leaderboard_rejects_unknown_pairs():
    from danas_bench.reports.leaderboard import run_leaderboard

    with pytest.raises(ValueError, match="pairs present"):
        run_leaderboard(["random"], pairs=["nope/none"], runs=1, synthetic=True, progress=False)


# --- the real Bench class (fake tables: synthetic values written as danas-bench Parquet) ------------------


def _write_fake_tables(root, n_archs: int = 200) -> None:
    """digits/{resnet,mlp,none} tables of ``n_archs`` canonical architectures (seed 0, a second seed on
    a few), with synthetic values but the real schema, metadata and file layout; plus the archs file."""
    from danas_bench.core import schema as tb
    from danas_bench.core.recipe import KD, Recipe

    rec = Recipe(dataset="digits", width=4, epochs=3, batch_size=32)
    rid = rec.recipe_id
    archs = np.sort(np.random.default_rng(0).choice(space.canonical_indices(), n_archs, replace=False))
    versions = tb.versions()
    for teacher in ("resnet", "vgg", "none"):
        sb = synthetic.SyntheticBench(f"digits/{teacher}", archs=archs, seeds=(0, 1), epochs=3)
        kd = KD(teacher)
        records = []
        for a in archs:
            a = int(a)
            for seed in (0, 1) if a % 7 == 0 else (0,):
                curve = [sb.query(a, epoch=e, seed=seed) for e in (1, 2, 3)]
                records.append(
                    {
                        "arch_index": a,
                        "arch": space.arch_str(a),
                        "seed": seed,
                        "teacher": teacher,
                        "kd_temperature": kd.temperature,
                        "kd_alpha": kd.alpha,
                        "recipe_id": rid,
                        "epochs": 3,
                        "train_loss": [1.0, 0.8, 0.6],
                        "train_acc": curve,
                        "valid_acc_curve": curve,
                        "epoch_seconds": [sb.cost(a) / 3] * 3,
                        "valid_acc": curve[-1],
                        "valid_loss": 0.5,
                        "valid_ece": 0.05,
                        "valid_kl_teacher": 0.1,
                        "valid_agreement": 0.9,
                        "test_acc": sb.test(a, seed=seed),
                        "test_loss": 0.5,
                        "test_ece": 0.05,
                        "test_kl_teacher": 0.1,
                        "test_agreement": 0.9,
                        "train_seconds": sb.cost(a),
                        "batch_size_models": 1,
                    }
                )
        meta = {
            "pair": f"digits/{teacher}",
            "dataset": "digits",
            "teacher": teacher,
            "recipe": rec.to_dict(),
            "recipe_id": rid,
            "kd": {"teacher": teacher, "temperature": kd.temperature, "alpha": kd.alpha},
            **versions,
        }
        tb.write_atomic(tb.to_table(records, meta), root / "digits" / f"{teacher}-{rid}.parquet")
    facts = [
        {
            "arch_index": int(a),
            "arch": space.arch_str(int(a)),
            **{k: v for k, v in sb.info(int(a)).items()},
            "is_zero_cell": space.is_zero_cell(int(a)),
        }
        for a in archs
    ]
    tb.write_atomic(
        tb.to_table(facts, {"dataset": "digits", "recipe_id": rid, **versions}, schema=tb.ARCH_SCHEMA),
        root / "digits" / f"archs-{rid}.parquet",
    )


def test_every_searcher_on_the_real_bench_class(tmp_path, monkeypatch):
    """The runner and the baselines against danas_bench.query.bench.Bench (not the synthetic stand-in)."""
    import danas_bench as db

    from conftest import danas_env, make_tables_root

    root = make_tables_root(tmp_path / "tables", datasets=("digits",))  # DaSS reads the teachers' logits
    for k, v in danas_env(root, tmp_path / "cache").items():
        monkeypatch.setenv(k, v)
    _write_fake_tables(root)
    # a query off the table would raise, never train; the fake tables are not in a MANIFEST
    benches = db.open_all(fallback="error", allow_unlisted=True)
    assert sorted(benches) == ["digits/none", "digits/resnet", "digits/vgg"]
    b = benches["digits/resnet"]
    for name in SEARCHERS:
        f = _run(name, b, {"queries": 12}, 0, benches)
        assert f.height == 12, name
        assert set(f["arch_index"].to_list()) <= set(b.archs.tolist())
        costs = [benches[p].cost(int(a), epoch=e) for p, a, e in zip(f["queried_pair"], f["arch_index"], f["epoch"])]
        assert np.allclose(f["cum_seconds"].to_numpy(), np.cumsum(costs)), name
        last = f.row(-1, named=True)
        assert last["incumbent_test"] == pytest.approx(b.test(last["incumbent"]))
        assert last["regret"] == pytest.approx(b.best()[1] - last["incumbent_test"])
    s = _make("dass", exclude_same_dataset=False)
    run(s, b, 12, seed=0)  # no pool given: the tables beside the bench
    assert s.state["tasks"] == ["digits/none", "digits/vgg"]
    assert s.problem.descriptor().shape == (7,) and s.problem.descriptor()[-1] == 0.0
    from danas_bench.reports.leaderboard import table_version

    tv = table_version(b)
    assert tv["recipe_id"] == b.recipe_id and len(tv["sha256"]) == 16 and tv["archs"] == 200


def test_dass_descriptors_need_no_raw_dataset(monkeypatch):
    """DaSS describes a task from the shipped teacher files alone: with every dataset loader broken the
    descriptors still compute, and the teacher's accuracy in them is the one measured on the data."""
    from danas_bench.query import facts
    from danas_bench.training import data, teachers

    facts._DESCRIPTORS.clear()
    monkeypatch.setattr(data, "load", lambda name: (_ for _ in ()).throw(AssertionError(f"read raw {name}")))
    got = {t: facts.logit_descriptor("digits", t) for t in ("resnet", "mlp", "none")}
    monkeypatch.undo()
    facts._DESCRIPTORS.clear()
    z, y = teachers.logits("digits", "resnet")["valid"], data.load("digits").y["valid"]
    assert got["resnet"][0] == pytest.approx(float((z.argmax(-1) == y).float().mean()))
    assert got["none"][-1] == 1.0 and got["resnet"][-1] == 0.0 and got["mlp"][5] == pytest.approx(np.log(10))

"""The recipe search: its reliability measures, its choice rule, and one real (tiny) search end to end;
the recipe features it relies on (warmup, versioned recipes, paired-seed plans)."""

import json

import numpy as np
import polars as pl
import pytest
import torch

from danas_bench.core import space
from danas_bench.core.recipe import KD, Recipe, recipe_for
from danas_bench.reports import pilot
from danas_bench.tables.plan import make_plan


def test_icc_is_one_for_identical_seeds_and_near_zero_for_pure_noise():
    rng = np.random.default_rng(0)
    cell = rng.normal(size=(400, 1))
    assert pilot.icc1(np.hstack([cell, cell]))[0] == pytest.approx(1.0)
    noise = rng.normal(size=(4000, 2))
    assert abs(pilot.icc1(noise)[0]) < 0.05
    # half the variance is the cell's: ICC(1) ~ 0.5, the two-seed mean's reliability ~ 2/3
    half = np.hstack([cell, cell]).repeat(10, 0) + rng.normal(size=(4000, 2))
    icc, icc2 = pilot.icc1(half)
    assert icc == pytest.approx(0.5, abs=0.05) and icc2 == pytest.approx(2 / 3, abs=0.05)


def test_top_heldout_percentile_perfect_and_chance():
    x = np.arange(1000, dtype=float)
    assert pilot.top_heldout_percentile(x, x) == pytest.approx(95.05, abs=0.01)
    rng = np.random.default_rng(1)
    assert pilot.top_heldout_percentile(rng.normal(size=20000), rng.normal(size=20000)) == pytest.approx(50, abs=2)


def test_late_gain_reads_the_last_quarter_of_the_median_curve():
    curves = [[0.1, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97]] * 3
    assert pilot.late_gain(curves) == pytest.approx(0.97 - 0.9)


def _cand(rid, icc, top, cost, **checks):
    base = {"converged": True, "kd_stable": True, "kd_helps": True, "teachers_ahead": True}
    return {
        "recipe_id": rid,
        "recipe": {"id": rid},
        "icc1_min": icc,
        "top10_min": top,
        "core_seconds": cost,
        "checks": base | checks,
    }


def test_choose_prefers_passing_candidates_within_budget_then_reliability():
    cands = [
        _cand("fails", 0.95, 90, 1.0, converged=False),
        _cand("costly", 0.99, 95, 5.0),
        _cand("ok-low", 0.80, 80, 1.0),
        _cand("ok-high", 0.86, 70, 1.0),
        _cand("ok-near", 0.85, 85, 1.0),
    ]
    out = pilot.choose(cands, budget_core_seconds=2.0)
    # ok-near is within 0.02 of the best ICC among passing candidates and has the better top-10% figure
    assert out["chosen"] == "ok-near" and out["shortfall"] == []


def test_choose_states_the_shortfall_when_nothing_passes():
    cands = [_cand("a", 0.9, 80, 1.0, converged=False, kd_helps=False), _cand("b", 0.7, 80, 1.0, kd_helps=False)]
    out = pilot.choose(cands, budget_core_seconds=2.0)
    assert out["chosen"] == "b" and out["shortfall"] == ["kd_helps"]
    assert pilot.choose(cands, budget_core_seconds=0.5)["chosen"] is None


def test_sample_cells_are_canonical_non_zero_and_seeded():
    a, b = pilot.sample_cells(128, 0), pilot.sample_cells(128, 0)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 128
    assert set(a.tolist()) <= set(space.canonical_indices().tolist())
    assert not space.zero_cells(a).any()


def test_a_search_run_before_a_teacher_was_retired_keeps_it():
    """digits' pilot distilled from the MLP that vgg replaced: its stored runs are measured with the MLP, and
    runs that lack a teacher with nothing in its place read as incomplete."""
    runs = lambda *ts: pl.DataFrame({"teacher": list(ts)})  # noqa: E731
    assert pilot.kd_settings("digits") == ["none", "resnet", "vgg"]
    assert pilot.kd_settings("digits", runs("none", "resnet", "mlp")) == ["none", "resnet", "mlp"]
    assert pilot.kd_settings("digits", runs("none", "resnet", "vgg")) == ["none", "resnet", "vgg"]
    assert pilot.kd_settings("digits", runs("none", "resnet")) == ["none", "resnet", "vgg"]
    # mnist1d's search predates resnet_ens, which replaced its ResNet: its two teachers keep it complete
    assert pilot.kd_settings("mnist1d", runs("none", "resnet", "tcn")) == ["none", "tcn", "resnet"]
    assert pilot.kd_settings("mnist1d") == ["none", "resnet_ens", "tcn"]


def test_a_real_tiny_search_measures_every_setting_and_resumes(tmp_path):
    """Digits, 6 cells, 2 epochs: every KD setting and seed is trained, measured, and a rerun trains nothing."""
    cells = pilot.sample_cells(6, 0)
    r = Recipe("digits", width=4, epochs=4, batch_size=32, n_train=100, lr=0.1, warmup_epochs=1)
    pilot.run_candidates([r], cells, chunk=3, workers=1, out_dir=tmp_path, log=lambda *_: None)
    df = pl.read_parquet(pilot.runs_path(tmp_path, r))
    assert df.height == 6 * 2 * 3 and set(df["teacher"]) == {"none", "resnet", "vgg"}
    m = pilot.measure(df, r, cells)
    assert set(m["settings"]) == {"none", "resnet", "vgg"}

    def wide(teacher):  # (cell, seed) test accuracies, computed here from the stored runs
        sub = df.filter(pl.col("teacher") == teacher).pivot(on="seed", index="arch_index", values="test_acc")
        return sub.sort("arch_index").select(["0", "1"]).to_numpy()

    assert m["settings"]["none"]["mean"] == pytest.approx(wide("none").mean())
    for t in ("resnet", "vgg"):
        kd, no = wide(t), wide("none")
        s_t = m["settings"][t]
        assert s_t["kd_gain"] == pytest.approx((kd.mean(1) - no.mean(1)).mean())
        assert s_t["helped"] == pytest.approx((kd.mean(1) > no.mean(1)).mean())
        assert s_t["collapsed"] == pytest.approx((kd < no - 0.05).mean())
        lo, hi = s_t["kd_gain_ci"]
        assert lo < s_t["kd_gain"] < hi  # a CI of positive width around the gain
    assert m["core_seconds"] > 0 and json.dumps(m)
    before = pilot.runs_path(tmp_path, r).stat().st_mtime_ns
    pilot.run_candidates([r], cells, chunk=3, workers=1, out_dir=tmp_path, log=lambda *_: None)
    assert pilot.runs_path(tmp_path, r).stat().st_mtime_ns == before
    # an incomplete candidate is not measured (no figure from a partial sample)
    assert pilot.measure(df.filter(pl.col("teacher") != "vgg"), r, cells) is None


def test_warmup_rises_linearly_then_follows_the_cosine_to_zero():
    from danas_bench.training.engine import lr_schedule

    r = Recipe("digits", epochs=4, batch_size=10, lr=1.0, warmup_epochs=1)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=r.lr)
    sched = lr_schedule(opt, r, n=50)  # 5 steps per epoch, 20 in all
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.02
    # no warmup: PyTorch's cosine, as in tables v1 (their recipe ids are unchanged)
    assert Recipe("digits", epochs=4).recipe_id == Recipe("digits", epochs=4, warmup_epochs=None).recipe_id


@pytest.mark.parametrize(
    "bad", [{"warmup_epochs": 4}, {"warmup_epochs": 0}, {"lr": float("nan")}, {"weight_decay": -1.0}]
)
def test_bad_recipe_fields_are_refused(bad):
    with pytest.raises(ValueError, match="recipe field|warmup_epochs"):
        Recipe("digits", epochs=4, **bad)


def test_versioned_recipe_lookup():
    assert recipe_for("digits").dataset == "digits"
    with pytest.raises(ValueError, match="digits-v9.yaml is missing"):
        recipe_for("digits", "v9")


@pytest.mark.parametrize("dataset", ["digits", "mnist1d", "fashion-mnist"])
def test_the_default_recipe_is_a_named_version(dataset):
    """conf/recipe/<dataset>.yaml names the version it serves (use: v2 for all three since session 25); the
    version's file holds the fields, so the shipped tables' ids stay reachable as recipe_id=v1 after promotion."""
    import yaml

    from danas_bench.core.recipe import RECIPE_DIR

    use = yaml.safe_load((RECIPE_DIR / f"{dataset}.yaml").read_text())["use"]
    assert recipe_for(dataset) == recipe_for(dataset, use)
    shipped = {"digits": "dfaf0472f47c5f97", "mnist1d": "7ede1274b97b9979", "fashion-mnist": "92500cf71c196591"}
    assert recipe_for(dataset, "v1").recipe_id == shipped[dataset]  # the v1 tables' id, unchanged


def test_a_recipe_alias_must_name_a_version_that_holds_fields(tmp_path, monkeypatch):
    """A broken alias is an error naming the fault, never "no recipe" (which would let open() serve another
    version's table); only a missing default file is RecipeMissing."""
    from danas_bench.core import recipe as rc

    monkeypatch.setattr(rc, "RECIPE_DIR", tmp_path)
    with pytest.raises(rc.RecipeMissing):
        rc.recipe_for("digits")
    (tmp_path / "digits.yaml").write_text("use: v3\n")
    with pytest.raises(ValueError, match=r"digits.yaml serves `use: v3`, but no recipe 'digits-v3'") as e:
        rc.recipe_for("digits")
    assert not isinstance(e.value, rc.RecipeMissing)
    (tmp_path / "digits-v3.yaml").write_text("use: v1\n")
    with pytest.raises(ValueError, match=r"use: v3.*digits-v3.yaml is itself an alias \(use: v1\)"):
        rc.recipe_for("digits")
    with pytest.raises(ValueError, match="is an alias"):
        rc.recipe_for("digits", "v3")
    (tmp_path / "digits-v3.yaml").write_text("width: 4\nepochs: 2\n")
    assert rc.recipe_for("digits") == rc.recipe_for("digits", "v3") and rc.recipe_for("digits").epochs == 2
    (tmp_path / "digits.yaml").write_text("use: v3\nepochs: 9\n")
    with pytest.raises(ValueError, match=r"holds only `use: <version>`; it also has \['epochs'\]"):
        rc.recipe_for("digits")
    with pytest.raises(ValueError, match="recipe_version=v3"):  # Hydra's +recipe=digits: the alias as fields
        rc.recipe_for("digits", {"use": "v3"})


def test_a_dry_run_names_the_version_the_alias_serves():
    from danas_bench.core.recipe import recipe_source
    from danas_bench.tables.cluster import _recipe_note

    served = recipe_source("digits").name  # the version conf/recipe/digits.yaml's `use:` line names
    assert served.startswith("digits-v") and _recipe_note("digits", None) == f"digits.yaml -> {served}"
    assert _recipe_note("digits", "v2") == "digits-v2.yaml"


@pytest.mark.parametrize(
    ("value", "key"), [(None, None), ("v2", "v2"), (123, "0000000000000123"), (1234567890123456, "1234567890123456")]
)
def test_recipe_key_recovers_what_hydra_reads_as_int(value, key):
    from danas_bench.core.recipe import recipe_key

    assert recipe_key(value) == key


def test_recipe_key_refuses_an_id_hydra_read_as_a_float():
    from danas_bench.core.recipe import recipe_key

    with pytest.raises(ValueError, match="quote it"):
        recipe_key(float("inf"))  # recipe_id=12345e6789012345


def test_paired_seed_plans_alternate_seeds_per_slice_and_v1_plans_are_unchanged():
    r = Recipe("digits", epochs=2)
    plan = make_plan("digits/none", r, KD("none"), seeds=[0, 1, 2], archs=20, shard_size=8, paired_seeds=2)
    order = [(s["seed"], tuple(s["archs"])) for s in plan.shards]
    assert [s for s, _ in order] == [0, 1, 0, 1, 0, 1, 2, 2, 2]
    assert order[0][1] == order[1][1] and order[2][1] == order[3][1]
    assert len(plan.rows()) == 60
    v1 = make_plan("digits/none", r, KD("none"), seeds=[0, 1], archs=20, shard_size=8)
    assert [s["seed"] for s in v1.shards] == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="paired_seeds"):
        make_plan("digits/none", r, KD("none"), seeds=[0], archs=20, paired_seeds=2)


def _frame(cells, seeds, acc_fn):
    rows = [
        {
            "arch_index": int(c),
            "seed": s,
            "test_acc": acc_fn(i, s),
            "valid_acc": acc_fn(i, s),
            "valid_acc_curve": [0.5, 0.8, 0.9, acc_fn(i, s)],
        }
        for i, c in enumerate(cells)
        for s in seeds
    ]
    return pl.DataFrame(rows)


def test_table_figures_recover_a_known_structure():
    from danas_bench.reports import reliability

    rng = np.random.default_rng(3)
    cells = pilot.sample_cells(400, 1)
    effect = rng.normal(0.9, 0.02, len(cells))
    noise = {s: rng.normal(0, 0.02, len(cells)) for s in (0, 1)}
    none = _frame(cells, (0, 1), lambda i, s: effect[i] + noise[s][i])
    # KD: +1 pp on every cell, except 10% of cells whose seed-0 run collapses by 20 pp
    bad = set(range(0, 400, 10))
    kd = _frame(cells, (0, 1), lambda i, s: effect[i] + noise[s][i] + 0.01 - (0.2 if (i in bad and s == 0) else 0))
    r = reliability.table_figures(kd, none, teacher_acc=0.99)
    assert r["cells"] == 400 and r["seeds"] == [0, 1]
    assert r["collapsed"] == pytest.approx(0.05)  # 40 of 800 runs
    assert r["kd_gain_ci"][0] <= 0.01 - 0.2 * 0.1 / 2 <= r["kd_gain_ci"][1]
    assert r["helped"] == pytest.approx(0.9)
    assert r["teacher_margin"] == pytest.approx(0.99 - r["best_seed_mean"])
    n = reliability.table_figures(none)
    assert n["icc1"] == pytest.approx(0.5, abs=0.1) and 50 < n["top10_heldout_pct"] < 95
    assert n["icc1_ci"][0] < n["icc1"] < n["icc1_ci"][1] and n["icc1_ci"][1] - n["icc1_ci"][0] < 0.25


def test_the_held_out_best_student_has_no_selection_bias():
    """400 cells of one true accuracy (0.9) and seed noise: the best seed mean is the top of 400 noisy
    means, well above 0.9; the held-out best (picked on the other seed, scored on this one) is not."""
    from danas_bench.reports import reliability

    rng = np.random.default_rng(5)
    cells = pilot.sample_cells(400, 1)
    noise = {s: rng.normal(0, 0.02, len(cells)) for s in (0, 1)}
    frame = _frame(cells, (0, 1), lambda i, s: 0.9 + noise[s][i])
    r = reliability.table_figures(frame, teacher_acc=0.99)
    assert r["best_seed_mean"] > 0.93
    assert abs(r["best_heldout"] - 0.9) < 0.045  # 3 sd of a mean of two runs
    assert r["teacher_margin_heldout"] == pytest.approx(0.99 - r["best_heldout"])
    # the pick reads valid, the score test, of the same runs, whatever the rows' order: a valid noise of
    # its own and shuffled rows, checked against the definition computed by hand
    vnoise = {s: rng.normal(0, 0.02, len(cells)) for s in (0, 1)}
    rows = _frame(cells, (0, 1), lambda i, s: 0.9 + noise[s][i])
    rows = rows.with_columns(
        valid_acc=pl.Series([0.9 + vnoise[s][i] for i in range(len(cells)) for s in (0, 1)])
    ).sample(fraction=1.0, shuffle=True, seed=1)
    valid = {(int(c), s): 0.9 + vnoise[s][i] for i, c in enumerate(cells) for s in (0, 1)}
    test = {(int(c), s): 0.9 + noise[s][i] for i, c in enumerate(cells) for s in (0, 1)}
    live = [int(c) for c in cells if not space.zero_cells(np.array([c]))[0]]
    by_hand = np.mean([test[max(live, key=lambda c: valid[(c, 1 - s)]), s] for s in (0, 1)])
    assert reliability.table_figures(rows)["best_heldout"] == pytest.approx(by_hand)
    # without noise, the held-out best is the best
    exact = reliability.table_figures(_frame(cells, (0, 1), lambda i, s: 0.5 + 0.001 * i))
    assert exact["best_heldout"] == pytest.approx(exact["best_seed_mean"])


def test_reliability_of_the_shipped_v1_tables_uses_every_multi_seed_cell():
    """v1 digits: seed 0 everywhere, seeds 1 and 2 on a 10% sample; 647 of those cells are non-zero."""
    from danas_bench.core.recipe import recipe_for
    from danas_bench.reports import reliability

    rid = recipe_for("digits", "v1").recipe_id
    frame = pl.read_parquet(f"tables/digits/none-{rid}.parquet", columns=reliability.COLUMNS)
    r = reliability.table_figures(frame)
    assert r["cells"] == 647 and r["seeds"] == [0, 1, 2]
    assert 0 < r["icc1"] < r["icc_mean3"] < 1


def test_a_one_seed_table_has_no_reliability_figures():
    """A table of one seed has nothing to compare: no cells, and the datasheet leaves it out (no crash)."""
    from danas_bench.reports import reliability

    frame = _frame(pilot.sample_cells(10, 0), (0,), lambda i, s: 0.5 + 0.01 * i)
    assert reliability.table_figures(frame) == {"cells": 0, "cells_seeds_0_1": 0}
    assert len(reliability.render([{"pair": "digits/none", "recipe_id": "x", "cells": 0}])) == 2  # header only


def test_a_recipe_with_the_same_student_reads_flops_from_its_archs_file():
    """Tables v2 keeps digits' student (width 4, 1 cell, 3 stages): its shards read FLOPs from the v1
    archs file, and they equal counting; another student finds no file and counts."""
    from danas_bench.training import engine

    r = Recipe("digits", width=4, epochs=3, batch_size=32, n_train=100, warmup_epochs=1)
    stored = engine._stored_flops(r)
    assert len(stored) == space.N_CANONICAL
    some = list(stored)[:: len(stored) // 3]
    assert [stored[i] for i in some] == [engine.count_flops(i, r) for i in some]
    assert engine._stored_flops(r.replace(width=5)) == {}


def test_the_pilot_never_overwrites_a_different_recipe_version(tmp_path, monkeypatch, capsys):
    """Tables carry their recipe's id: rerunning the pilot with another choice keeps the version file and
    says how to write the choice as a new version."""
    from danas_bench import commands
    from danas_bench.core import recipe as rc

    monkeypatch.setattr(rc, "RECIPE_DIR", tmp_path)
    monkeypatch.setattr(commands, "RECIPE_DIR", tmp_path)
    first = Recipe("digits", width=4, epochs=30).to_dict()
    commands._write_recipe("digits", "v2", first)
    assert rc.recipe_for("digits", "v2") == Recipe("digits", width=4, epochs=30)
    text = (tmp_path / "digits-v2.yaml").read_text()
    commands._write_recipe("digits", "v2", Recipe("digits", width=4, epochs=20).to_dict())
    assert (tmp_path / "digits-v2.yaml").read_text() == text
    assert "kept digits-v2.yaml" in capsys.readouterr().out
    commands._write_recipe("digits", "v3", Recipe("digits", width=4, epochs=20).to_dict())
    assert rc.recipe_for("digits", "v3").epochs == 20


def test_a_tier_m_search_joins_the_tier_s_results(tmp_path, danas_cli):
    """`danas-bench pilot 'datasets=[fashion-mnist]'` measures that dataset on its own sample size and
    budget (its tables hold a 500-cell sample) and keeps the tier-S datasets' results in pilot.json."""
    shipped = json.loads(open("docs/pilot.json").read())
    (tmp_path / "pilot.json").write_text(json.dumps({ds: shipped[ds] for ds in ("digits", "mnist1d")}))
    danas_cli(
        "pilot", "datasets=[fashion-mnist]", "train=false", "write_recipes=false", f"out_dir={tmp_path}", check=True
    )
    out = json.loads((tmp_path / "pilot.json").read_text())
    assert list(out) == ["digits", "mnist1d", "fashion-mnist"]
    assert out["digits"] == shipped["digits"] and out["mnist1d"] == shipped["mnist1d"]
    fm = out["fashion-mnist"]
    assert fm["cells"] == pilot.sample_cells(48, 0).tolist() and fm["generation_cells"] == 500
    assert fm["candidates"] == [] and fm["chosen"] is None and fm["n_planned"] >= 6
    md = (tmp_path / "pilot.md").read_text()
    assert f"**Chosen: `{shipped['digits']['chosen']}`**" in md
    assert "fashion-mnist 20 core-s x 500 cells (16.7 core-h)" in md
    assert "= 39.9 core-hours" in md  # the tier-S caps alone
    assert f"0 of {fm['n_planned']} candidates measured on 48 cells" in md


def test_a_pilot_setting_missing_for_a_dataset_is_named():
    from danas_bench import commands

    assert commands._per_dataset(128, "digits") == 128
    assert commands._per_dataset({"digits": 64}, "digits") == 64
    assert commands._per_dataset({"digits": 2.8}, "digits", float) == 2.8
    with pytest.raises(ValueError, match="no value for 'mnist1d'"):
        commands._per_dataset({"digits": 64}, "mnist1d")


def test_a_dataset_without_its_settings_stops_the_pilot_before_it_trains(tmp_path, danas_cli):
    res = danas_cli("pilot", "datasets=[cifar10]", "train=false", f"out_dir={tmp_path}", timeout=120)
    assert res.returncode == 2 and "no value for 'cifar10'" in res.stderr
    assert not (tmp_path / "pilot.json").exists()


def test_longer_training_pairs_only_schedule_twins_and_measures_the_final_gain():
    """Two candidates that differ only in epochs and warmup are compared cell by cell: a known +1 pp on
    every KD setting comes back inside its interval; a candidate that also changes lr is not paired, nor
    one whose runs are incomplete."""
    rng = np.random.default_rng(0)
    cells = pilot.sample_cells(60, 2)
    base = rng.normal(0.85, 0.02, len(cells))
    noise = {s: rng.normal(0, 0.005, len(cells)) for s in (0, 1)}

    def runs(shift):
        extra = rng.normal(0, 0.002, len(cells))  # each candidate's own training noise
        return pl.concat(
            [
                _frame(cells, (0, 1), lambda i, s: base[i] + noise[s][i] + extra[i] + shift).with_columns(
                    teacher=pl.lit(t)
                )
                for t in ("none", "resnet", "mlp")
            ]
        )

    short = Recipe("digits", width=4, epochs=20, warmup_epochs=2)
    long_ = Recipe("digits", width=4, epochs=30, warmup_epochs=3)
    other_lr = Recipe("digits", width=4, epochs=40, lr=0.05)
    partial = Recipe("digits", width=4, epochs=50)
    frames = [
        (short, runs(0.0)),
        (long_, runs(0.01)),
        (other_lr, runs(0.02)),
        (partial, runs(0.03).filter(pl.col("teacher") != "mlp")),
    ]
    out = pilot.longer_training(frames, cells)
    assert [(d["short"], d["long"], d["epochs"]) for d in out] == [(short.recipe_id, long_.recipe_id, [20, 30])]
    for t in ("none", "resnet", "mlp"):
        lo, hi = out[0]["settings"][t]["ci"]
        assert out[0]["settings"][t]["gain"] == pytest.approx(0.01, abs=0.002) and lo <= 0.01 <= hi < 0.02


def test_the_icc_interval_covers_the_true_icc_at_its_level():
    """Cells with true spread 1 and seed noise 1 (ICC(1) = 0.5), 48 cells x 2 seeds as in tier M's search:
    the F-based 95% interval holds 0.5 in about 95% of 400 draws and is wide (~0.4) at that size."""
    from danas_bench.reports.reliability import icc1_ci

    rng = np.random.default_rng(1)
    hits, widths = 0, []
    for _ in range(400):
        a = rng.normal(0, 1, (48, 1)) + rng.normal(0, 1, (48, 2))
        lo, hi = icc1_ci(a)
        hits += lo <= 0.5 <= hi
        widths.append(hi - lo)
    assert 0.92 <= hits / 400 <= 0.98
    assert 0.3 < np.median(widths) < 0.6
    assert icc1_ci(np.ones((5, 2)) + np.arange(5)[:, None]) == (1.0, 1.0)  # no seed noise at all


def test_the_pick_is_compared_with_its_runner_up_on_the_same_cells():
    """A candidate whose seed noise is a third of another's is ahead beyond noise; two candidates drawn
    alike are not told apart (the interval holds 0)."""
    rng = np.random.default_rng(2)
    cells = pilot.sample_cells(128, 3)
    true = rng.normal(0.9, 0.02, len(cells))

    def runs(noise_sd):
        noise = {s: rng.normal(0, noise_sd, len(cells)) for s in (0, 1)}
        return pl.concat(
            [
                _frame(cells, (0, 1), lambda i, s: true[i] + noise[s][i]).with_columns(teacher=pl.lit(t))
                for t in ("none", "resnet", "mlp")
            ]
        )

    quiet, loud, loud2 = (Recipe("digits", epochs=e) for e in (10, 20, 30))
    ahead = pilot.min_icc_difference((quiet, runs(0.007)), (loud, runs(0.02)), cells, n_boot=300)
    assert ahead["diff"] > 0 and ahead["ci"][0] > 0
    tie = pilot.min_icc_difference((loud, runs(0.02)), (loud2, runs(0.02)), cells, n_boot=300)
    assert tie["ci"][0] < 0 < tie["ci"][1]
    results = [
        {
            "recipe_id": r.recipe_id,
            "core_seconds": 1.0,
            "checks": {"ok": True},
            "icc1_min": v,
            "top10_min": 60,
            "recipe": {},
        }
        for r, v in ((quiet, 0.9), (loud, 0.5), (loud2, 0.4))
    ]
    assert pilot.runner_up(results, quiet.recipe_id, 2.0)["recipe_id"] == loud.recipe_id
    assert pilot.runner_up(results[:1], quiet.recipe_id, 2.0) is None


def test_the_pick_is_final_once_the_unmeasured_rest_is_over_budget():
    """A partly measured candidate whose runs so far cost well over the cap cannot be chosen, so the pick no
    longer waits for it; one near or under the cap still can, and keeps the pick provisional."""
    from danas_bench.reports.pilot_report import _finality

    cells = pilot.sample_cells(8, 0)
    done, wide, near = (Recipe("digits", width=w, epochs=e) for w, e in ((4, 20), (8, 30), (4, 30)))

    def runs(seconds):
        return _frame(cells, (0, 1), lambda i, s: 0.8).with_columns(teacher=pl.lit("none"), train_seconds=seconds)

    frames = [(done, runs(10.0)), (wide, runs(30.0)), (near, runs(22.0))]
    measured = [{"recipe_id": done.recipe_id}]
    pending = pilot.over_budget_pending(frames, measured, budget_core_seconds=20.0)
    assert [c["recipe_id"] for c in pending] == [wide.recipe_id] and pending[0]["core_seconds"] == 30.0
    assert not pilot.decided(3, measured, pending)  # `near` (22 core-s so far) may still come in under the cap
    assert pilot.decided(2, measured, pilot.over_budget_pending(frames[:2], measured, 20.0))

    res = {"candidates": measured, "n_planned": 2, "final": True, "pending_over_budget": pending}
    assert "Final" in _finality(res) and "30.0 core-s per training on its 16 runs" in _finality(res)
    assert "Provisional" in _finality({**res, "n_planned": 3, "final": False})
    assert _finality({"candidates": measured, "n_planned": 1}) == ""  # a pilot.json from before the flag


@pytest.mark.parametrize(
    "ci, verdict",
    [((0.05, 0.2), "ahead beyond"), ((-0.1, 0.1), "not distinguishable"), ((-0.5, -0.1), "less reliable beyond")],
)
def test_the_runner_up_verdict_reads_its_interval(ci, verdict):
    """The pick can be ahead, tied, or (chosen for passing a check the runner-up fails) behind beyond noise."""
    from danas_bench.reports.pilot_report import _versus

    res = {
        "candidates": [],
        "versus_runner_up": {"a": "x", "b": "y", "diff": sum(ci) / 2, "ci": list(ci)},
    }
    assert verdict in _versus(res)

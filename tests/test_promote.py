"""`danas-bench promote`: a dataset serves a new recipe version by default only once its tables are complete."""

from __future__ import annotations

import shutil

import pytest
import yaml

from danas_bench.core import recipe as rc
from danas_bench.core.paths import shard_dir
from danas_bench.core.recipe import KD
from danas_bench.tables import generate, promote
from danas_bench.tables.plan import make_plan, save_plan


@pytest.fixture
def recipe_dir(tmp_path, monkeypatch):
    """A copy of conf/recipe/ that the test may rewrite."""
    d = tmp_path / "recipe"
    shutil.copytree(rc.RECIPE_DIR, d)
    monkeypatch.setattr(rc, "RECIPE_DIR", d)
    return d


def test_a_partial_version_is_refused_with_every_gap_named(tables_root, recipe_dir, tiny_recipe):
    recipe = tiny_recipe("digits")
    (recipe_dir / "digits-vt.yaml").write_text(yaml.safe_dump(recipe.to_dict()))
    assert rc.recipe_for("digits", "vt") == recipe
    plan = make_plan("digits/none", recipe, KD("none"), seeds=[0], archs=16, shard_size=8)
    d = shard_dir("digits/none", recipe.recipe_id, tables_root)
    plan = save_plan(plan, d)
    generate.run_shard(str(d), plan.to_json(), 0, 8)
    generate.merge(plan, d, tables_root, log=lambda *a: None, partial=True)

    todo = promote.problems("digits", "vt", tables_root)
    assert any(t.startswith("digits/none:") and "partial (50.0% of its plan)" in t for t in todo)
    assert any(t.startswith("digits/resnet: no merged table") for t in todo)
    assert any(t.startswith("digits/vgg: no merged table") for t in todo)  # the current teachers, not retired ones
    assert any("no archs file" in t and "recipe_version=vt" in t for t in todo)
    alias = (recipe_dir / "digits.yaml").read_text()
    with pytest.raises(ValueError, match="digits cannot serve vt yet: digits/none"):
        promote.promote("digits", "vt", tables_root)
    assert (recipe_dir / "digits.yaml").read_text() == alias  # nothing written


def test_a_complete_version_becomes_the_default_with_the_alias_comments_kept(recipe_dir):
    """The shipped digits v2 tables are complete for its current teachers (tables, expected files, archs file,
    verified); v1 is not since digits' MLP was retired (it has no vgg table)."""
    path = recipe_dir / "digits.yaml"
    path.write_text(path.read_text().replace("use: v2", "use: v1"))
    assert rc.recipe_for("digits") == rc.recipe_for("digits", "v1")
    assert any(t.startswith("digits/vgg: no merged table of v1") for t in promote.problems("digits", "v1"))
    assert promote.problems("digits", "v2") == []
    promote.promote("digits", "v2")
    text = path.read_text()
    assert text.count("use:") == 1 and "use: v2" in text and text.startswith("# The recipe open(pair)")
    assert rc.recipe_for("digits") == rc.recipe_for("digits", "v2")


def test_the_command_lists_the_gaps_and_refuses_unknown_names(danas_cli):
    res = danas_cli("promote", "dataset=digits", "version=v2", "dry_run=true")
    assert res.returncode == 0 and "digits: v2 is complete" in res.stdout
    res = danas_cli("promote", "dataset=digits", "version=v1", "dry_run=true")
    assert res.returncode == 1 and "- digits/vgg: no merged table of v1" in res.stdout
    res = danas_cli("promote", "dataset=cifar")
    assert res.returncode == 2 and "unknown dataset 'cifar'" in res.stderr
    res = danas_cli("promote", "dataset=digits", "version=v7")
    assert res.returncode == 2 and "no recipe 'digits-v7'" in res.stderr
    res = danas_cli("promote")
    assert res.returncode == 2 and "name the dataset" in res.stderr

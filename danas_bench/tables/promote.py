"""Promote a recipe version to the one a dataset serves by default (``conf/recipe/<dataset>.yaml``:
``use: <version>``), and only once its tables are complete (``danas-bench promote``).

``open(pair)``, ``generate`` and the leaderboards read the alias, so a version promoted early would serve a
partial table under the default name. ``problems`` lists what stands in the way: for each pair of the dataset
a merged table of the version's recipe that holds its whole plan (not ``partial``), an expected file fitted
on that table, the recipe's archs file, and a clean ``verify`` of those files. Every version stays reachable
by name (``recipe_id=v1``) before and after.
"""

from __future__ import annotations

import re
from pathlib import Path

from danas_bench.core import recipe as rc
from danas_bench.core.pairs import TEACHERS
from danas_bench.core.paths import tables_dir
from danas_bench.tables.manifest import load_manifest, verify

USE_LINE = re.compile(r"^use:.*$", re.MULTILINE)


def problems(dataset: str, version: str, root: Path | None = None) -> list[str]:
    """What keeps ``version`` from being served for ``dataset``; empty when its tables are complete."""
    if dataset not in TEACHERS:
        raise ValueError(f"unknown dataset {dataset!r}; datasets with tables: {', '.join(TEACHERS)}")
    rid = rc.recipe_for(dataset, version).recipe_id  # RecipeMissing names the versions there are
    root = Path(root) if root else tables_dir()
    files = load_manifest(root)["files"]
    out = []

    def entry(kind: str, **match) -> tuple[str, dict] | None:
        return next(
            (
                (p, e)
                for p, e in files.items()
                if e.get("kind") == kind and all(e.get(k) == v for k, v in match.items())
            ),
            None,
        )

    for teacher in ("none", *TEACHERS[dataset]):
        pair = f"{dataset}/{teacher}"
        table = entry("table", pair=pair, recipe_id=rid)
        if table is None:
            out.append(f"{pair}: no merged table of {version} ({rid}); generate it, then `danas-bench merge`")
            continue
        path, meta = table
        if meta.get("partial"):
            out.append(
                f"{pair}: {path} is partial ({100 * meta.get('coverage', 0):.1f}% of its plan); finish the "
                f"generation (`danas-bench progress recipe_id={version}`) and merge it without partial=true"
            )
            continue
        exp = entry("expected", pair=pair, recipe_id=rid)
        if exp is None or exp[1].get("source") != path:  # a stale one (fitted on older bytes) fails verify below
            out.append(
                f"{pair}: no expected file fitted on the merged table; run "
                f"`danas-bench expected pair={pair} recipe_id={version}`"
            )
    if entry("archs", dataset=dataset, recipe_id=rid) is None:
        out.append(
            f"{dataset}: no archs file of {rid}; run `danas-bench archs dataset={dataset} recipe_version={version}`"
        )
    out += [p for p in verify(root, log=lambda *a: None) if f"{dataset}/" in p]
    return out


def promote(dataset: str, version: str, root: Path | None = None) -> Path:
    """Point ``conf/recipe/<dataset>.yaml`` at ``version`` (the ``use:`` line rewritten, the comment lines
    around it kept); ValueError listing the problems when its tables are not complete."""
    todo = problems(dataset, version, root)
    if todo:
        raise ValueError(f"{dataset} cannot serve {version} yet: " + "; ".join(todo))
    path = rc.RECIPE_DIR / f"{dataset}.yaml"
    text = path.read_text()
    if not USE_LINE.search(text):
        raise ValueError(f"{path} is not an alias (no `use:` line); write `use: {version}` there by hand")
    path.write_text(USE_LINE.sub(f"use: {version}", text, count=1))
    return path

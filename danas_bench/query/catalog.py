"""Which tables exist under a root, which one ``danas_bench.open(pair)`` reads when a pair has tables
of several recipes, and :class:`LazyPool`, a pool of benches that opens each pair on first access."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from danas_bench.core import recipe as recipes
from danas_bench.core import schema as tb
from danas_bench.core.pairs import RETIRED, Pair
from danas_bench.core.recipe import RECIPE_ID, Recipe, RecipeMissing, recipe_for, recipe_id_of


def discover(root: Path | str | None = None) -> dict[str, dict[str, Path]]:
    """``{pair: {recipe_id: path}}`` of the tables under ``root`` (``tables/<dataset>/<teacher>-<id>.parquet``)."""
    from danas_bench.core.paths import tables_dir

    root = Path(root) if root is not None else tables_dir()
    out: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name in ("teachers", "shards") or d.name.startswith("."):
            continue
        for f in sorted(d.glob("*.parquet")):
            if f.name.startswith((".", "archs-")) or "-" not in f.stem:
                continue
            teacher, rid = f.stem.rsplit("-", 1)
            if RECIPE_ID.fullmatch(rid):
                out.setdefault(f"{d.name}/{teacher}", {})[rid] = f
    return out


def default_pairs(root: Path | str | None = None) -> list[str]:
    """The pairs ``open_all()`` serves: where a dataset has tables of its configured recipe
    (``conf/recipe/<dataset>.yaml``), only its pairs that have one (a pair that exists only in another
    version, e.g. mnist1d/mlp in v1, waits for ``recipe_id=``); elsewhere every pair (your own tables).
    A retired teacher's pairs (``pairs.RETIRED``, e.g. digits/mlp) are left out: ``open(pair)`` still reads
    them by name, but the standard set (``open_all()``, the leaderboard) is the current teachers'."""
    found = discover(root)
    dataset = {p: p.split("/", 1)[0] for p in found}  # not Pair.parse: your own tables may name any dataset
    rid = {ds: _served(ds) for ds in set(dataset.values())}
    has_configured = {p: rid[dataset[p]] in recipes for p, recipes in found.items()}
    served = {dataset[p] for p, ok in has_configured.items() if ok}
    return sorted(p for p, ok in has_configured.items() if (ok or dataset[p] not in served) and p not in _RETIRED)


class LazyPool(Mapping):
    """A pool of benches that opens each pair on first access: ``LazyPool(pairs, opener, opened)``.

    ``opened``: benches already open (``{pair: bench}``), handed out as they are. What a bench's
    ``default_pool()`` returns and what ``danas_bench.search.run`` reads other pairs from."""

    def __init__(self, pairs, opener: Callable[[str], object], opened: Mapping | None = None):
        self._pairs = sorted(set(pairs) | set(opened or {}))
        self._opener = opener
        self._opened = dict(opened or {})

    def __getitem__(self, pair: str):
        if pair not in self._opened:
            if pair not in self._pairs:
                raise KeyError(f"no pair {pair!r}; pairs: {', '.join(self._pairs)}")
            self._opened[pair] = self._opener(pair)
        return self._opened[pair]

    def __iter__(self):
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)


def choose(pair: str, found: dict[str, Path], recipe_id: str | None) -> Path:
    """The table of ``recipe_id`` (a 16-hex id, or a version name such as ``"v2"`` for the recipe of
    ``conf/recipe/<dataset>-v2.yaml``); else the only one; else the dataset's configured recipe's; else
    the newest (with a warning)."""
    if recipe_id is not None:
        rid = resolve_recipe(pair, recipe_id)
        if rid not in found:
            named = "" if rid == recipe_id else f" ({recipe_id} is recipe {rid})"
            raise ValueError(f"{pair} has no table of recipe {recipe_id!r}{named}; recipes present: {sorted(found)}")
        return found[rid]
    if len(found) == 1:
        return next(iter(found.values()))
    dataset = Pair.parse(pair).dataset
    try:  # the dataset's configured recipe (conf/recipe/<dataset>.yaml), when it is among them; a broken
        rid = recipe_for(dataset).recipe_id  # alias raises rather than serve another version
        if rid in found:
            return found[rid]
    except RecipeMissing:
        pass
    newest = max(found.values(), key=lambda p: p.stat().st_mtime)
    warnings.warn(
        f"{pair} has tables of several recipes {sorted(found)}; opening the newest, {newest.name}; "
        f"pass recipe_id= to choose",
        stacklevel=3,
    )
    return newest


class UnknownRecipe(ValueError):
    """A ``recipe_id`` that is neither a recipe id nor a version the dataset has a recipe file for."""


def resolve_recipe(pair: str, version: str) -> str:
    """The recipe id that ``version`` names for ``pair``: a 16-hex id as it is, a version name such as ``v2``
    as the id of ``conf/recipe/<dataset>-v2.yaml``; UnknownRecipe if it is neither."""
    if RECIPE_ID.fullmatch(version):  # before parsing the pair: your own tables may name any dataset
        return version
    dataset = Pair.parse(pair).dataset
    try:
        return recipe_id_of(dataset, version)
    except RecipeMissing:
        have = sorted(p.stem for p in recipes.RECIPE_DIR.glob(f"{dataset}-*.yaml"))
        raise UnknownRecipe(
            f"recipe_id={version!r} is neither a 16-hex recipe id nor a known version of {dataset} "
            f"(no conf/recipe/{dataset}-{version}.yaml; versions: {have or 'none'})"
        ) from None


def pairs_with_recipe(root: Path | str | None, recipe: str) -> dict[str, str]:
    """``{pair: recipe_id}`` of the pairs under ``root`` with a table of ``recipe`` (an id or version name);
    datasets without such a version are left out. A retired teacher's pair is left out of the version its
    dataset serves (the standard set, as in ``default_pairs``) and kept in older ones (the v1 board keeps
    digits/mlp and mnist1d/mlp, as shipped)."""
    out = {}
    for pair, found in sorted(discover(root).items()):
        try:
            rid = resolve_recipe(pair, recipe)
        except UnknownRecipe:
            continue
        if rid in found and not (pair in _RETIRED and rid == _served(pair.split("/", 1)[0])):
            out[pair] = rid
    return out


def _served(dataset: str) -> str | None:
    """The recipe id ``conf/recipe/<dataset>.yaml`` serves; None where the dataset has no recipe file."""
    try:
        return recipe_for(dataset).recipe_id
    except RecipeMissing:  # no conf/recipe/<dataset>.yaml (a broken alias raises)
        return None


_RETIRED = frozenset(f"{ds}/{t}" for ds, ts in RETIRED.items() for t in ts)  # pairs of retired teachers


def check_planned_seeds(path: Path, meta: dict, seeds: list, root: Path, pair: str, recipe_id: str) -> None:
    """TableError unless a table's seeds are among the planned ones (recorded in the metadata since merges
    write it, else in the shards' plan.json when it is there): a table with other seeds is damaged."""
    planned = meta.get("seeds")
    if planned is None:
        plan = root / "shards" / Pair.parse(pair).slug / recipe_id / "plan.json"
        if plan.is_file():
            import json

            try:
                planned = sorted({sh["seed"] for sh in json.loads(plan.read_text())["shards"]})
            except (ValueError, KeyError, TypeError):
                planned = None  # a damaged plan is generate's business; the MANIFEST vouches for the table
    if planned is not None and not set(seeds) <= set(planned):
        from danas_bench.core.schema import TableError

        raise TableError(
            f"{path}: holds seeds {seeds} but its plan has seeds {planned}; the file "
            f"is damaged: restore it from git or regenerate it"
        )


def read_table_meta(path: Path, pair: str) -> tuple[dict, Recipe]:
    """A table's metadata and recipe, checked: it holds ``pair`` and its recipe hashes to its recipe id."""
    meta = tb.read_meta(path)
    if meta.get("pair") != pair:
        raise tb.TableError(f"{path}: holds pair {meta.get('pair')!r}, expected {pair!r}")
    recipe = Recipe.from_dict(meta["recipe"])
    if recipe.recipe_id != meta["recipe_id"]:
        raise tb.TableError(
            f"{path}: recipe in the metadata hashes to {recipe.recipe_id}, "
            f"not the recorded recipe_id {meta['recipe_id']}"
        )
    return meta, recipe


def table_for(pair: str, root: Path, recipe_id: str | None = None) -> Path:
    """The table ``open(pair)`` reads under ``root`` (``choose``'s rule); ValueError naming the pairs present."""
    tables = discover(root)
    if pair not in tables:
        present = ", ".join(sorted(tables)) or "none"
        raise ValueError(
            f"no table for pair {pair!r} under {root}; pairs present: {present}. Pairs are "
            f"'dataset/teacher' (teacher 'none' = no KD); make a table with "
            f"`danas-bench generate pair=...`"
        )
    return choose(pair, tables[pair], recipe_id)

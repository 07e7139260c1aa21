"""Expected accuracy: a cross-fitted model's estimate of every architecture's seed mean, per pair.

One training run of a small student is a noisy measurement of its architecture, and architectures
that share structure share quality, so a model fitted across a whole table estimates an
architecture's *expected* (seed-mean) accuracy better than its own run does (NAS-Bench-301's point).

``danas-bench expected pair=...`` fits, per metric, a model of the metric on architecture features
with K-fold cross-fitting grouped by canonical architecture: an architecture's estimate comes from
the one fold model that saw none of its rows (architectures the table lacks get the mean of the fold
models). It writes ``tables/<dataset>/<teacher>-<recipe_id>.expected.parquet`` (all 15,625 indices,
isomorphic ones sharing their canonical value; no pickle: the product is the table of estimates),
lists it in ``tables/MANIFEST`` (kind ``expected``) and records the model settings and validation
figures in the file's metadata. ``bench.query(..., seed="expected")`` reads it as a dense array.

Validation (leave one seed out, on architectures with >= 2 recorded seeds): for each held-out seed h,
the held-out value is predicted by (a) one other recorded seed, (b) the expected value, (c) the mean of
the other recorded seeds; Kendall tau, Spearman rho, MAE and the share of the top 1% / 5% recovered,
averaged over h weighted by architectures. Several candidate models are compared on these numbers and
the one with the best mean Kendall tau of (b) is written.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.paths import CONF_DIR
from danas_bench.query.estimates import SUFFIX, expected_path, load  # noqa: F401  (the reading side, also used by the bench)

BASE_METRICS = ("valid_acc", "test_acc")
GAIN_METRICS = {"valid_kd_gain": "valid_acc", "test_kd_gain": "test_acc"}  # KD pair minus `none`, per seed
TOP = (0.01, 0.05)
# the input-to-output paths of the cell, as edge positions in space.EDGES order
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


# --- features -------------------------------------------------------------------------------


def features(archs: np.ndarray, kind: str) -> np.ndarray:
    """Architecture features: ``onehot`` (30), ``pairs`` (one-hot and its cross-edge products),
    ``paths`` (one-hot and, per input-output path, the one-hot of its op sequence)."""
    oh = space.one_hot(archs).astype(np.float64)
    if kind == "onehot":
        return oh
    if kind == "pairs":
        cols = [oh]
        for e, f in itertools.combinations(range(space.N_EDGES), 2):  # same-edge products are always 0
            a, b = oh[:, 5 * e : 5 * e + 5], oh[:, 5 * f : 5 * f + 5]
            cols.append((a[:, :, None] * b[:, None, :]).reshape(len(oh), 25))
        return np.hstack(cols)
    if kind == "paths":
        ops = space.ops_matrix(archs)
        cols = [oh]
        for path in PATHS:
            code = np.zeros(len(ops), dtype=np.int64)
            for e in path:
                code = code * space.N_OPS + ops[:, e]
            cols.append(np.eye(space.N_OPS ** len(path))[code])
        return np.hstack(cols)
    raise ValueError(f"unknown feature set {kind!r}; choose onehot, pairs or paths")


def make_model(spec: dict):
    """A fresh scikit-learn regressor from a candidate spec ``{model: hgb|ridge, params: {...}}``."""
    params = dict(spec.get("params") or {})
    if spec["model"] == "hgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(early_stopping=False, random_state=0, **params)
    if spec["model"] == "ridge":
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=params.get("alphas", (0.1, 1.0, 10.0, 100.0)))
    raise ValueError(f"unknown model {spec['model']!r}; choose hgb or ridge")


# --- cross-fitting --------------------------------------------------------------------------


def folds_of(archs: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of each canonical architecture: a seeded permutation of the sorted set, so it depends on
    which architectures the table holds, never on their values."""
    uniq = np.unique(archs)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    fold = np.empty(len(uniq), dtype=np.int64)
    fold[perm] = np.arange(len(uniq)) % k
    return fold[np.searchsorted(uniq, archs)]


def cross_fit(arch: np.ndarray, y: np.ndarray, spec: dict, k: int = 5, seed: int = 0) -> np.ndarray:
    """Estimates over all 15,625 indices from rows ``(arch, y)`` (canonical indices, one row per seed).

    A table architecture's estimate comes from the fold model fitted without any of its rows; other
    canonical architectures get the mean of the fold models; every index takes its canonical value.
    """
    canon = space.canonical_indices()
    fold = folds_of(arch, k, seed)
    x_rows = features(arch, spec["features"])
    x_all = features(canon, spec["features"])
    in_table = np.isin(canon, arch)
    row_fold_of = dict(zip(arch.tolist(), fold.tolist()))
    canon_fold = np.array([row_fold_of.get(int(c), -1) for c in canon])
    est = np.zeros(len(canon))
    for f in range(k):
        model = make_model(spec).fit(x_rows[fold != f], y[fold != f])
        pred = model.predict(x_all)
        est[canon_fold == f] = pred[canon_fold == f]
        est[~in_table] += pred[~in_table] / k
    out = np.empty(space.N_ARCHS)
    out[canon] = est
    return out[space.canonical_table()]


# --- validation -----------------------------------------------------------------------------


def _topk(target: np.ndarray, pred: np.ndarray, frac: float) -> float:
    k = max(1, int(round(frac * len(target))))
    return len(set(np.argsort(-target)[:k]) & set(np.argsort(-pred)[:k])) / k


def validate(arch: np.ndarray, seed: np.ndarray, y: np.ndarray, est: np.ndarray) -> dict:
    """Leave-one-seed-out figures of (a) one recorded seed, (b) the estimate, (c) the mean of the other
    recorded seeds, against the held-out seed, on architectures with >= 2 recorded seeds."""
    from scipy.stats import kendalltau, spearmanr

    seeds = sorted(set(seed.tolist()))
    uniq = np.unique(arch)
    grid = np.full((len(seeds), len(uniq)), np.nan)
    grid[np.searchsorted(seeds, seed), np.searchsorted(uniq, arch)] = y
    have = ~np.isnan(grid)
    multi = have.sum(0) >= 2
    names = ("single", "expected", "others_mean")
    acc = {n: {"kendall": 0.0, "spearman": 0.0, "mae": 0.0, "top1": 0.0, "top5": 0.0} for n in names}
    weight, held = 0, []
    for h in range(len(seeds)):
        cols = np.nonzero(multi & have[h])[0]
        if len(cols) < 3:
            continue
        g = grid[:, cols]
        target = g[h]
        others = np.delete(g, h, axis=0)
        first = np.argmax(~np.isnan(others), axis=0)  # the smallest other recorded seed
        preds = {
            "single": others[first, np.arange(len(cols))],
            "expected": est[uniq[cols]],
            "others_mean": np.nanmean(others, axis=0),
        }
        for n, p in preds.items():
            a = acc[n]
            a["kendall"] += len(cols) * float(kendalltau(p, target).statistic)
            a["spearman"] += len(cols) * float(spearmanr(p, target).statistic)
            a["mae"] += len(cols) * float(np.abs(p - target).mean())
            a["top1"] += len(cols) * _topk(target, p, TOP[0])
            a["top5"] += len(cols) * _topk(target, p, TOP[1])
        weight += len(cols)
        held.append(int(seeds[h]))
    if not weight:
        return {"archs": int(multi.sum()), "held_out_seeds": [], "note": "no architecture has >= 2 seeds"}
    out = {n: {m: v / weight for m, v in a.items()} for n, a in acc.items()}
    return {"archs": int(multi.sum()), "held_out_seeds": held, **out}


# --- one pair -------------------------------------------------------------------------------


def _rows(path: Path, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = pq.read_table(path, columns=["arch_index", "seed", metric])
    a = t.column("arch_index").to_numpy().astype(np.int64)
    s = t.column("seed").to_numpy().astype(np.int64)
    y = t.column(metric).to_numpy(zero_copy_only=False).astype(np.float64)
    ok = np.isfinite(y)
    return space.canonical_table()[a[ok]].astype(np.int64), s[ok], y[ok]


def _gain_rows(kd_path: Path, none_path: Path, metric: str):
    """KD gain rows: (arch, seed) recorded in both tables, the KD value minus the no-KD value."""
    a1, s1, y1 = _rows(kd_path, metric)
    a0, s0, y0 = _rows(none_path, metric)
    k1, k0 = a1 * 65536 + s1, a0 * 65536 + s0
    common, i1, i0 = np.intersect1d(k1, k0, return_indices=True)
    return a1[i1], s1[i1], y1[i1] - y0[i0]


def fit_pair(
    pair: str,
    root: Path | None = None,
    recipe_id: str | None = None,
    candidates: dict | None = None,
    model: str = "auto",
    folds: int = 5,
    fold_seed: int = 0,
    log=print,
    force: bool = False,
) -> dict:
    """Fit, validate and write one pair's expected table; returns its metadata (settings, validation). An
    intact expected file fitted on this very table (and ``none`` table) with these settings is kept as it
    is unless ``force``: refitting gives the same estimates and only costs minutes."""
    from danas_bench.core.paths import tables_dir
    from danas_bench.query import bench as bm
    from danas_bench.tables.manifest import update_manifest

    root = Path(root) if root is not None else tables_dir()
    b = bm.open(pair, root, fallback="error", recipe_id=recipe_id)  # the same table choice as open()
    none_path = None
    if b.teacher != "none":
        try:
            none_path = bm.open(f"{b.dataset}/none", root, fallback="error", recipe_id=b.recipe_id).path
        except tb.TableError:
            raise  # a damaged or unlisted `none` table is an error, never a silently dropped metric
        except ValueError:
            log(f"{pair}: no {b.dataset}/none table of recipe {b.recipe_id}: KD gain not estimated")
    candidates = candidates or default_candidates()
    if model != "auto" and model not in candidates:
        raise ValueError(f"model {model!r} is not among the candidates {sorted(candidates)}")
    metrics = list(BASE_METRICS) + (list(GAIN_METRICS) if none_path is not None else [])
    estimates, validation = {}, {}
    names = list(candidates) if model == "auto" else [model]
    out = expected_path(b.path)
    settings = {
        "candidates": {n: candidates[n] for n in names},
        "folds": folds,
        "fold_seed": fold_seed,
        "metrics": metrics,
        "schema_version": tb.SCHEMA_VERSION,
    }
    if not force and (old := _fitted_on(out, root, b.path, none_path, settings)):
        log(f"{pair}: {out} is fitted on this table with these settings; nothing to fit (force=true refits)")
        return old
    for m in metrics:
        rows = _rows(b.path, m) if m in BASE_METRICS else _gain_rows(b.path, none_path, GAIN_METRICS[m])
        validation[m], est_of = {}, {}
        for name in names:
            est_of[name] = cross_fit(rows[0], rows[2], candidates[name], folds, fold_seed)
            validation[m][name] = validate(*rows, est_of[name])
        validation[m]["rows"] = int(len(rows[0]))
        estimates[m] = est_of
    score = {
        n: float(np.nanmean([validation[m][n].get("expected", {}).get("kendall", np.nan) for m in metrics]))
        for n in names
    }
    pick = max(names, key=lambda n: (np.nan_to_num(score[n], nan=-2.0), -names.index(n)))
    canon = space.canonical_table()
    n_rows = np.zeros(space.N_ARCHS, dtype=np.int16)
    a_all = _rows(b.path, "test_acc")[0]
    np.add.at(n_rows, a_all, 1)
    cols = {
        "arch_index": pa.array(np.arange(space.N_ARCHS, dtype=np.int32)),
        "canonical": pa.array(canon.astype(np.int32)),
        "table_seeds": pa.array(n_rows[canon]),
    }
    for m in metrics:
        cols[m] = pa.array(estimates[m][pick].astype(np.float32))
    meta = {
        "schema_version": tb.SCHEMA_VERSION,
        "kind": "expected",
        "pair": pair,
        "recipe_id": b.recipe_id,
        "source": b.path.name,
        "source_sha256": tb.sha256(b.path),
        "none_source": none_path.name if none_path is not None else None,
        "none_source_sha256": tb.sha256(none_path) if none_path is not None else None,
        "metrics": metrics,
        "model": pick,
        "model_spec": candidates[pick],
        "selection_score": score,
        "selection": "highest mean Kendall tau of the expected value over the metrics",
        "folds": folds,
        "fold_seed": fold_seed,
        "candidates": {n: candidates[n] for n in names},
        "validation": validation,
        "code_revision": tb.code_revision(),
        "sklearn_version": __import__("sklearn").__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    table = pa.table(cols).replace_schema_metadata({tb.META_KEY: json.dumps(meta, sort_keys=True).encode()})
    tb.write_atomic(table, out)
    update_manifest(
        out, root, kind="expected", extra={"pair": pair, "source": f"{b.dataset}/{b.path.name}", "model": pick}
    )
    log(f"{pair}: wrote {out} ({pick}); " + summary_line(meta))
    return meta


def _fitted_on(out: Path, root: Path, source: Path, none: Path | None, settings: dict) -> dict | None:
    """The metadata of ``out`` where it is intact and was fitted on ``source`` (and ``none``) as they are now,
    with the same ``settings`` (metadata fields: candidates, folds, metrics, schema version); else None."""
    from danas_bench.tables.manifest import check_listed

    if not out.exists():
        return None
    try:
        check_listed(out, root)
        meta = tb.read_meta(out)
    except (tb.TableError, OSError):
        return None
    same = (
        meta.get("source_sha256") == tb.sha256(source)
        and meta.get("none_source_sha256") == (tb.sha256(none) if none is not None else None)
        and all(meta.get(k) == v for k, v in settings.items())
    )
    return meta if same else None


def summary_line(meta: dict) -> str:
    parts = []
    for m in meta["metrics"]:
        v = meta["validation"][m][meta["model"]]
        if "expected" in v:
            parts.append(
                f"{m} tau single {v['single']['kendall']:.3f} / expected {v['expected']['kendall']:.3f}"
                f" / others-mean {v['others_mean']['kendall']:.3f}"
            )
    return "; ".join(parts)


def default_candidates() -> dict:
    """The candidates of ``conf/expected.yaml``: the command and ``fit_pair`` share one list."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "expected.yaml").candidates)


# --- reading (the query path) ---------------------------------------------------------------

# --- docs -----------------------------------------------------------------------------------


def collect(root: Path | None = None) -> list[dict]:
    """The metadata of every expected file in the MANIFEST, sorted by (pair, recipe id).

    A pair can hold expected files of several recipes (v1 beside v2): each is its own entry."""
    from danas_bench.core.paths import tables_dir
    from danas_bench.tables.manifest import load_manifest

    root = root or tables_dir()
    out = []
    for rel, entry in sorted(load_manifest(root)["files"].items()):
        if entry.get("kind") == "expected" and (root / rel).exists():
            out.append(tb.read_meta(root / rel))
    return sorted(out, key=lambda m: (m["pair"], m["recipe_id"]))


def _f(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def validation_lines(metas: list[dict], all_candidates: bool = False) -> list[str]:
    """Markdown table rows of the validation figures (the chosen model, or every candidate)."""
    L = [
        "| pair | recipe | metric | model | archs (held-out seeds) | "
        "Kendall tau: one seed / expected / mean of others | Spearman: one / exp / others | "
        "MAE: one / exp / others | top-1% recovered: one / exp / others | "
        "top-5% recovered: one / exp / others |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for meta in metas:
        pair = f"{meta['pair']} | `{meta['recipe_id']}`"
        for m in meta["metrics"]:
            names = list(meta["candidates"]) if all_candidates else [meta["model"]]
            for n in names:
                v = meta["validation"][m][n]
                if "expected" not in v:
                    L.append(f"| {pair} | {m} | {n} | {v['archs']} | {v.get('note', 'n/a')} | | | | |")
                    continue
                cell = lambda k, v=v: " / ".join(_f(v[x][k]) for x in ("single", "expected", "others_mean"))  # noqa: E731
                star = " (chosen)" if all_candidates and n == meta["model"] else ""
                L.append(
                    f"| {pair} | {m} | {n}{star} | {v['archs']} ({v['held_out_seeds']}) | {cell('kendall')} | "
                    f"{cell('spearman')} | {cell('mae')} | {cell('top1')} | {cell('top5')} |"
                )
    return L


def render(metas: list[dict]) -> str:
    L = [
        "# Expected accuracy (denoised view of each table)",
        "",
        "Generated by `danas-bench expected pair=all` from the metadata of the `*.expected.parquet` files it "
        "wrote (listed in `tables/MANIFEST`, kind `expected`); read them with "
        '`bench.query(arch, metric, seed="expected")`.',
        "",
        "**Method.** Per pair and metric (valid / test accuracy; for KD pairs also the KD gain against the "
        "dataset's `none` table, per seed), a regression of the recorded rows (one per architecture and seed) on "
        "architecture features, cross-fitted in K folds grouped by canonical architecture: an architecture's "
        "estimate comes from the fold model that saw none of its rows; canonical architectures the table lacks "
        "get the mean of the fold models; isomorphic indices share their canonical value.",
        "",
        "**Validation** (leave one seed out, on the architectures with two or more recorded seeds): each "
        "held-out seed's value is predicted by (a) one other recorded seed, (b) the expected value, (c) the mean "
        "of the other recorded seeds (with two seeds, (c) equals (a)); figures are averaged over the held-out "
        "seeds, weighted by architectures. The target is a single held-out run, so every figure includes that "
        "run's own noise. The model written is the candidate with the highest mean Kendall tau of (b) over the "
        "pair's metrics (a choice among a few, on the same held-out seeds: slightly optimistic). On a sampled "
        "table (tier M) the estimates of architectures outside the sample extrapolate from the sample and are "
        "validated only inside it.",
        "",
        "## Chosen model per pair",
        "",
        *validation_lines(metas),
        "",
        "## Every candidate",
        "",
        *validation_lines(metas, all_candidates=True),
        "",
        "## Candidates",
        "",
    ]
    specs = {}
    for meta in metas:
        specs.update(meta["candidates"])
    for n, s in sorted(specs.items()):
        L.append(f"- `{n}`: {s['model']} on `{s['features']}` features, {s.get('params')}")
    L += [
        "",
        "Models: scikit-learn "
        + ", ".join(sorted({m.get("sklearn_version", "?") for m in metas}))
        + f"; folds {sorted({m['folds'] for m in metas})}.",
        "",
    ]
    return "\n".join(L)


def datasheet_lines(metas: list[dict]) -> list[str]:
    """The datasheet's section: the chosen model's figures per pair (details in expected.md)."""
    if not metas:
        return ["## Expected accuracy", "", "No expected tables yet: run `danas-bench expected pair=all`.", ""]
    return [
        "## Expected accuracy",
        "",
        "A cross-fitted model's estimate of each architecture's seed mean (`seed=\"expected\"`), validated "
        "leave-one-seed-out on the architectures with several seeds against the held-out seed: (a) one "
        "recorded seed, (b) the expected value, (c) the mean of the other recorded seeds. Method and every "
        "candidate model: [expected.md](expected.md).",
        "",
        *validation_lines(metas),
        "",
    ]


def write_docs(root: Path | None = None, out_dir: Path = Path("docs")) -> Path:
    metas = collect(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "expected.md").write_text(render(metas))
    return out_dir / "expected.md"


def pairs_of(pair: str, root: Path | None = None, recipe_id: str | None = None) -> list[str]:
    """``all`` -> every pair with a table under ``root`` (of ``recipe_id``, an id or version name, when
    given); otherwise ``[pair]``."""
    from danas_bench.query.catalog import discover, pairs_with_recipe

    if pair != "all":
        return [pair]
    return sorted(discover(root) if recipe_id is None else pairs_with_recipe(root, recipe_id))

"""One ask/tell protocol for every searcher, and the runner that drives it against a bench.

A searcher never touches the bench. It receives a :class:`Problem` (what it may know: the pair, the
architectures on offer, arch-only facts such as latency, validation results of *other* pairs for
meta-learning) and an RNG, then alternates::

    ask() -> Ask | int | None      # the next evaluation it wants (None: it has nothing left to ask)
    tell(ask, value)               # the validation value the bench returned for it

:func:`run` owns the bench and the budget: every ask becomes one charged ``bench.query`` (validation
metric only), and every row of the returned trajectory records the query, its simulated cost, the
cumulative cost, the incumbent (best validation accuracy so far at full fidelity), the incumbent's
test accuracy (read through the uncharged ``bench.test``) and its regret against ``bench.best()``.

Writing a new searcher::

    from danas_bench.search import Searcher, run

    class Greedy(Searcher):
        name = "greedy"
        def setup(self, problem, rng):
            self.order = rng.permutation(problem.archs)
        def ask(self):
            return int(self.order[len(self.history)])

    frame = run(Greedy(), bench, {"queries": 100}, seed=0)

``self.history`` (list of ``(Ask, value)``) and ``self.seen`` (arch index -> best value seen) are kept
by the base class's :meth:`Searcher.observe`, which :func:`run` calls before :meth:`Searcher.tell`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from danas_bench.core import space
from danas_bench.query.catalog import LazyPool  # noqa: F401  (re-exported: danas_bench.search.LazyPool)
from danas_bench.search.protocol import BenchLike

# --- the protocol ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One evaluation a searcher asks for.

    ``pair``: ``None`` for the pair under search; another pair of the same dataset (for example
    ``"digits/none"``, which NAS-without-KD searches on) is queried and charged the same way.
    ``epoch``: ``None`` for the final epoch; a lower epoch is cheaper (multi-fidelity) but never
    becomes the incumbent. ``kd_temperature`` / ``kd_alpha``: ``None`` for the table's own KD setting;
    anything else is an off-table setting that the bench trains live (slow, see docs/searchers.md).
    ``fallback``: the method had nothing new to ask and this is a random architecture instead
    (counted in ``Searcher.fallbacks`` once answered, and reported by the leaderboard).
    """

    arch: int
    pair: str | None = None
    epoch: int | None = None
    kd_temperature: float | None = None
    kd_alpha: float | None = None
    fallback: bool = False

    @property
    def off_table(self) -> bool:
        return self.kd_temperature is not None or self.kd_alpha is not None


class Searcher:
    """Base class of the ask/tell protocol; subclasses override :meth:`setup`, :meth:`ask`, :meth:`tell`.

    Constructor keyword arguments are the searcher's configuration: they are stored in ``self.config``
    (together with the class's ``defaults``) and recorded in every leaderboard row.
    """

    name: str = "searcher"
    defaults: dict = {}

    def __init__(self, **config):
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown options {sorted(unknown)}; valid options: {sorted(self.defaults)}"
            )
        self.config = {**self.defaults, **config}
        for k, v in self.config.items():
            setattr(self, k, v)
        self.history: list[tuple[Ask, float]] = []
        self.seen: dict[int, float] = {}
        # answered asks where the method had nothing new to offer and asked a random architecture
        # instead (``Ask(..., fallback=True)``): counted so that the leaderboard can report them
        self.fallbacks = 0

    # protocol -------------------------------------------------------------------------------------
    def setup(self, problem: Problem, rng: np.random.Generator) -> None:
        """Called once before the first ask, with the problem and the run's RNG."""

    def ask(self) -> Ask | int | None:
        raise NotImplementedError

    def tell(self, ask: Ask, value: float) -> None:
        """The validation value of ``ask`` (``history`` and ``seen`` are already updated)."""

    def preflight(self, problem: Problem) -> None:
        """Raise (ImportError, FileNotFoundError, ...) if a package or data file this searcher needs on
        ``problem`` is missing; the leaderboard calls it for every task before any run, so a missing
        dependency fails in a second, not after minutes of other runs."""

    def run_options(self, run: int) -> dict:
        """Options that follow the run seed (the leaderboard applies them per run unless the user fixed
        them): every stochastic part of a searcher must vary with the run, not only its RNG."""
        return {}

    # bookkeeping (called by the runner) -----------------------------------------------------------
    def _start(self, problem: Problem, rng: np.random.Generator) -> None:
        self.history, self.seen, self.fallbacks = [], {}, 0
        self.problem, self.rng = problem, rng
        self.setup(problem, rng)

    def observe(self, ask: Ask, value: float) -> None:
        self.history.append((ask, value))
        self.fallbacks += bool(ask.fallback)
        if ask.pair is None and ask.epoch is None and not ask.off_table:
            self.seen[ask.arch] = max(value, self.seen.get(ask.arch, -np.inf))

    def config_id(self) -> str:
        return config_id(self.name, self.config)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({opts})"


def config_id(name: str, config: Mapping) -> str:
    blob = json.dumps({"name": name, **dict(config)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# --- what a searcher may see ----------------------------------------------------------------------

Pool = Mapping[str, BenchLike] | Callable[[str], BenchLike]


class Problem:
    """The searcher's read-only view of a pair: no test metrics, no oracle, no charged queries.

    - ``pair``, ``dataset``, ``teacher``, ``archs`` (canonical indices on offer, sorted), ``ops`` (their
      op ids, shape (n, 6)), ``onehot`` (their (n, 30) one-hot encoding), ``seeds``, ``epochs``;
    - ``info(arch)`` / ``latency(archs)``: architecture-only facts (params, FLOPs, latency in ms);
    - ``cost(arch, epoch)``: the simulated seconds a query would be charged;
    - ``pairs``: the other pairs the pool offers; ``validation(pair)``: their validation accuracy over
      their architectures (uncharged, for meta-learning; refused for the pair under search);
      ``descriptor(pair)``: a teacher / dataset description vector; ``archs_of(pair)``: which
      architectures another pair holds.
    """

    def __init__(self, bench: BenchLike, pool: Pool | None = None):
        self._bench = bench
        self._pool = pool
        self._opened: dict[str, BenchLike] = {bench.pair: bench}
        self.pair, self.dataset, self.teacher = bench.pair, bench.dataset, bench.teacher
        self.archs = np.asarray(bench.archs, dtype=np.int64)
        self.archs.setflags(write=False)
        self.ops = space.ops_matrix(self.archs)  # (n, 6) op ids of the canonical archs on offer
        self.ops.setflags(write=False)
        self.onehot = space.one_hot(self.archs).astype(np.float64)  # (n, 30), edge-major: 5 * e + op
        self.onehot.setflags(write=False)
        self.seeds = tuple(bench.seeds)
        self.epochs = int(bench.epochs)
        self._latency: np.ndarray | None = None

    # the pair under search
    def info(self, arch) -> dict:
        return dict(self._bench.info(arch))

    def latency(self, archs=None) -> np.ndarray:
        """Latency in ms of ``archs`` (default: all of ``self.archs``), cached."""
        if self._latency is None:
            self._latency = np.asarray(self._bench.info_many(self.archs, "latency_ms"), dtype=float)
        if archs is None:
            return self._latency
        pos = np.searchsorted(self.archs, space.canonical_table()[np.asarray(archs, dtype=np.int64)])
        pos = np.clip(pos, 0, len(self.archs) - 1)
        hit = self.archs[pos] == space.canonical_table()[np.asarray(archs, dtype=np.int64)]
        out = self._latency[pos].copy()
        if not hit.all():
            out[~hit] = [self._bench.info(int(a))["latency_ms"] for a in np.asarray(archs)[~hit]]
        return out

    def cost(self, arch, epoch: int | None = None) -> float:
        return float(self._bench.cost(arch, epoch=epoch))

    def position(self, arch) -> int:
        """Row of ``arch`` (any index of its class) in ``archs``; KeyError if it is not on offer."""
        c = int(space.canonical_table()[space.to_index(arch)])
        i = int(np.searchsorted(self.archs, c))
        if i >= len(self.archs) or self.archs[i] != c:
            raise KeyError(f"architecture {c} is not on offer in {self.pair}")
        return i

    # other pairs
    @property
    def pairs(self) -> list[str]:
        """Every pair the pool offers (the pair under search included)."""
        if isinstance(self._pool, Mapping):
            return sorted(self._pool)
        return sorted(self._opened)

    def has_pair(self, pair: str) -> bool:
        try:
            self._open(pair)
            return True
        except Exception:
            return False

    def _open(self, pair: str) -> BenchLike:
        if pair not in self._opened:
            if self._pool is None:
                raise KeyError(f"no pool of benches to open {pair!r} from")
            self._opened[pair] = self._pool[pair] if isinstance(self._pool, Mapping) else self._pool(pair)
        return self._opened[pair]

    def archs_of(self, pair: str) -> np.ndarray:
        """The canonical architectures another pair's table holds (which ones, not their results)."""
        return np.asarray(self._open(pair).archs, dtype=np.int64)

    def validation(self, pair: str, metric: str = "valid_acc") -> tuple[np.ndarray, np.ndarray]:
        """(canonical archs, mean-over-seeds validation metric) of *another* pair; not charged."""
        if pair == self.pair:
            raise PermissionError(
                f"{pair} is the pair under search: its results are only read through charged queries (ask/tell)"
            )
        bench = self._open(pair)
        archs = np.asarray(bench.archs, dtype=np.int64)
        return archs, np.asarray(bench.query_many(archs, metric, seed="mean"), dtype=float)

    def descriptor(self, pair: str | None = None) -> np.ndarray:
        """A teacher / dataset description of ``pair`` (default: the pair under search)."""
        return describe(self._open(pair or self.pair))

    def companion(self, teacher: str) -> str:
        """The pair of the same dataset with another teacher, e.g. ``companion("none")``."""
        return f"{self.dataset}/{teacher}"


def describe(bench: BenchLike) -> np.ndarray:
    """A bench's fixed-length teacher / dataset description (DaSS's task embedding) as float32."""
    return np.asarray(bench.descriptor(), dtype=np.float32)


# --- the runner -----------------------------------------------------------------------------------


def make_budget(budget):
    """A fresh :class:`danas_bench.core.budget.Budget` from a Budget, a dict
    ``{"queries": n, "seconds": s, "fractional_queries": bool}`` (either limit may be None), or an int
    (queries)."""
    from danas_bench.core.budget import Budget

    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, (int, np.integer)):
        return Budget(max_queries=int(budget))
    if isinstance(budget, Mapping):
        b = dict(budget)
        q = b.pop("queries", b.pop("max_queries", None))
        s = b.pop("seconds", b.pop("max_seconds", None))
        frac = bool(b.pop("fractional_queries", False))
        if b:
            raise ValueError(f"unknown budget keys {sorted(b)}; use queries, seconds and fractional_queries")
        return Budget(
            max_queries=None if q is None else int(q),
            max_seconds=None if s is None else float(s),
            fractional_queries=frac,
        )
    raise TypeError(f"budget must be a Budget, a dict or an int, got {type(budget).__name__}")


def _spent(budget) -> tuple[float, int]:
    """(seconds, queries) the budget reports as spent."""
    q = budget.spent_queries  # a float under fractional_queries (low-epoch queries count a share)
    return float(budget.spent_seconds), float(q) if isinstance(q, float) else int(q)


TRAJECTORY_SCHEMA = {
    "searcher": pl.Utf8,
    "config_id": pl.Utf8,
    "pair": pl.Utf8,
    "seed": pl.Int64,
    "step": pl.Int64,
    "arch_index": pl.Int64,
    "arch": pl.Utf8,
    "queried_pair": pl.Utf8,
    "epoch": pl.Int64,
    "kd_temperature": pl.Float64,
    "kd_alpha": pl.Float64,
    "value": pl.Float64,
    "cost_seconds": pl.Float64,
    "cum_seconds": pl.Float64,
    "cum_queries": pl.Float64,
    "incumbent": pl.Int64,
    "incumbent_valid": pl.Float64,
    "incumbent_test": pl.Float64,
    "regret": pl.Float64,
    "wall_seconds": pl.Float64,
}


def run(
    searcher: Searcher,
    bench: BenchLike,
    budget,
    seed: int,
    *,
    pool: Pool | None = None,
    metric: str = "valid_acc",
    test_metric: str = "test_acc",
    max_steps: int = 1_000_000,
) -> pl.DataFrame:
    """Drive ``searcher`` against ``bench`` until ``budget`` is spent (or the searcher stops asking).

    ``budget``: a fresh Budget, or ``{"queries": n, "seconds": s}``, or an int (queries).
    ``pool``: the other pairs (a dict pair -> bench, or a function pair -> bench) that asks on other
    pairs (NAS-without-KD's ``none`` pair) and meta-learning (DaSS) read; default: the bench's
    ``default_pool()`` (for real tables: every table under its root, opened lazily).
    Returns the trajectory, one row per charged query (columns: :data:`TRAJECTORY_SCHEMA`).
    """
    from danas_bench.core.budget import BudgetExhausted

    budget = make_budget(budget)
    if pool is None:
        pool = bench.default_pool()
    problem = Problem(bench, pool)
    rng = np.random.default_rng(seed)
    query_rng = np.random.default_rng([seed, 1])  # the bench's seed draws: independent of the searcher's
    best_test = float(bench.best(test_metric)[1])
    test_cache: dict[tuple, float] = {}
    canon = space.canonical_table()
    full = problem.epochs

    searcher._start(problem, rng)
    rows: list[dict] = []
    inc: tuple | None = None  # (arch, kd_t, kd_a)
    inc_valid, inc_test = -np.inf, np.nan
    cum_s, t0 = _spent(budget)[0], time.perf_counter()
    for _ in range(max_steps):
        a = searcher.ask()
        if a is None:
            break
        if not isinstance(a, Ask):
            a = Ask(int(a))
        arch = int(canon[space.to_index(a.arch)])
        if arch != a.arch or a.pair == bench.pair:
            a = dataclasses.replace(a, arch=arch, pair=None if a.pair == bench.pair else a.pair)
        target = problem._open(a.pair) if a.pair not in (None, bench.pair) else bench
        if target is not bench and target.dataset != bench.dataset:
            raise ValueError(f"{searcher.name} asked pair {a.pair!r}: only pairs of {bench.dataset} may be queried")
        before, _ = _spent(budget)
        try:
            value = float(
                target.query(
                    arch,
                    metric,
                    epoch=a.epoch,
                    seed=None,
                    rng=query_rng,
                    budget=budget,
                    kd_temperature=a.kd_temperature,
                    kd_alpha=a.kd_alpha,
                )
            )
        except BudgetExhausted:
            break
        after, queries = _spent(budget)
        cost = after - before
        cum_s = after
        searcher.observe(a, value)
        at_full = a.epoch is None or a.epoch >= full
        if at_full and value > inc_valid:
            inc_valid = value
            inc = (arch, a.kd_temperature, a.kd_alpha)
            if inc not in test_cache:
                test_cache[inc] = float(bench.test(arch, test_metric, kd_temperature=inc[1], kd_alpha=inc[2]))
            inc_test = test_cache[inc]
        rows.append(
            {
                "step": len(rows) + 1,
                "arch_index": arch,
                "arch": space.arch_str(arch),
                "queried_pair": target.pair,
                "epoch": a.epoch,
                "kd_temperature": a.kd_temperature,
                "kd_alpha": a.kd_alpha,
                "value": value,
                "cost_seconds": cost,
                "cum_seconds": cum_s,
                "cum_queries": queries,
                "incumbent": None if inc is None else inc[0],
                "incumbent_valid": None if inc is None else inc_valid,
                "incumbent_test": None if inc is None else inc_test,
                "regret": None if inc is None else best_test - inc_test,
                "wall_seconds": time.perf_counter() - t0,
            }
        )
        searcher.tell(a, value)
    frame = pl.DataFrame(
        rows, schema={k: v for k, v in TRAJECTORY_SCHEMA.items() if k not in ("searcher", "config_id", "pair", "seed")}
    )
    return frame.with_columns(
        pl.lit(searcher.name).alias("searcher"),
        pl.lit(searcher.config_id()).alias("config_id"),
        pl.lit(bench.pair).alias("pair"),
        pl.lit(int(seed), pl.Int64).alias("seed"),
    ).select(list(TRAJECTORY_SCHEMA))


def final(frame: pl.DataFrame) -> dict:
    """The last row's incumbent and regret, and the queries / simulated seconds at which it was reached."""
    if frame.height == 0:
        return {
            "regret": np.nan,
            "incumbent_test": np.nan,
            "queries_to_final": np.nan,
            "seconds_to_final": np.nan,
            "queries": 0,
            "seconds": 0.0,
        }
    last = frame.row(-1, named=True)
    first = frame.filter(pl.col("incumbent") == last["incumbent"]).row(0, named=True)
    return {
        "regret": last["regret"],
        "incumbent_test": last["incumbent_test"],
        "incumbent": last["incumbent"],
        "queries_to_final": first["cum_queries"],
        "seconds_to_final": first["cum_seconds"],
        "queries": last["cum_queries"],
        "seconds": last["cum_seconds"],
    }


# --- helpers shared by the baselines ---------------------------------------------------------------


def unseen_random(problem: Problem, rng: np.random.Generator, seen) -> int | None:
    """A uniformly random architecture of ``problem.archs`` not in ``seen`` (None when all are seen)."""
    archs = problem.archs
    for _ in range(32):
        a = int(archs[rng.integers(len(archs))])
        if a not in seen:
            return a
    left = archs[~np.isin(archs, np.fromiter(seen, dtype=np.int64, count=len(seen)))]
    return int(left[rng.integers(len(left))]) if len(left) else None


def sample_policy(problem: Problem, rng: np.random.Generator, logits: np.ndarray, exclude=None) -> int | None:
    """Draw one architecture on offer, not in ``exclude`` (a set of indices, or a boolean mask over
    ``problem.archs``), with probability proportional to the
    per-edge categorical policy ``softmax(logits[e])`` (``logits``: (6, 5)) of its canonical op list.

    Exact and vectorised (Gumbel-max over all canonical architectures on offer), so a converged policy
    never loops on architectures it has already paid for.
    """
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    score = problem.onehot @ logp.reshape(-1)
    if isinstance(exclude, np.ndarray):
        score = np.where(exclude, -np.inf, score)
    elif exclude:
        score = np.where(
            np.isin(problem.archs, np.fromiter(exclude, dtype=np.int64, count=len(exclude))), -np.inf, score
        )
    if not np.isfinite(score).any():
        return None
    g = score + rng.gumbel(size=score.shape)
    return int(problem.archs[int(np.argmax(g))])

"""What a caller may ask a bench for: the metric names, which of them a searcher sees, and the checks of
``metric``, ``epoch`` and ``seed`` that every query runs before it touches a column."""

from __future__ import annotations

import numpy as np

from danas_bench.core import schema as tb


class MissingRecord(LookupError):
    """The table (and overlay) hold no row for this architecture / seed / KD setting, and
    ``fallback="error"``."""


# metrics a searcher may query; the value is the curve that answers ``epoch=`` (None: final only)
VISIBLE = {
    "valid_acc": "valid_acc_curve",
    "valid_acc_curve": "valid_acc_curve",
    "train_acc": "train_acc",
    "train_loss": "train_loss",
    "valid_loss": None,
    "valid_ece": None,
    "valid_kl_teacher": None,
    "valid_agreement": None,
    "train_seconds": None,
}
TEST = {"test_acc": None, "test_loss": None, "test_ece": None, "test_kl_teacher": None, "test_agreement": None}
ALL = {**VISIBLE, **TEST}
LOWER_IS_BETTER = {
    "valid_loss",
    "valid_ece",
    "valid_kl_teacher",
    "train_loss",
    "train_seconds",
    "test_loss",
    "test_ece",
    "test_kl_teacher",
}
INFO = ("params", "flops", "latency_ms")


def colkey(metric, epoch, test: bool, epochs: int, where: str):
    """Check (metric, epoch) for ``query`` (test=False) or ``test`` (test=True) and return the store's
    column key: a column name, or (curve, epoch). ``where`` names the table in the messages."""
    allowed = ALL if test else VISIBLE
    if type(metric) is not str:
        raise ValueError(f"metric must be a string, got {metric!r}; valid metrics: {', '.join(allowed)}")
    if metric not in allowed:
        if not test and metric in TEST:
            raise ValueError(
                f"{metric!r} is a test metric: searchers see validation metrics only; "
                f"read test metrics with bench.test() / bench.test_many() (never charged). "
                f"Query metrics: {', '.join(VISIBLE)}"
            )
        if metric in INFO:
            raise ValueError(f"{metric!r} is an architecture fact: use bench.info(arch)[{metric!r}]")
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(allowed)}")
    if epoch is None:
        return metric
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
        raise ValueError(f"epoch must be None (final) or an int in 1..{epochs}, got {epoch!r}")
    epoch = int(epoch)
    if not 1 <= epoch <= epochs:
        raise ValueError(
            f"epoch {epoch} is out of range: {where} trains {epochs} epochs; "
            f"valid epochs: 1..{epochs} (or None for the final value)"
        )
    curve = allowed[metric]
    if curve is None:
        if epoch == epochs:
            return metric
        raise ValueError(
            f"{metric!r} is recorded after the last epoch only; per-epoch metrics: "
            f"{', '.join(k for k, v in allowed.items() if v)}"
        )
    return (curve, epoch) if epoch < epochs or curve != metric else curve


def check_seed(seed, pair: str, seeds) -> None:
    """ValueError unless ``seed`` is None, "mean", "expected" or an int a table can record."""
    if seed is None or (isinstance(seed, str) and seed in ("mean", "expected")):
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= tb.SEED_MAX:
        raise ValueError(
            f"seed must be None (sample a recorded seed), 'mean' or an int in [0, {tb.SEED_MAX}]; "
            f"got {seed!r}; {pair} records seeds {seeds}"
        )


def missing_message(bench, i: int, c: int, st, seed, key: tuple) -> str:
    """Why ``bench`` (``fallback="error"``) has no row for architecture ``i`` (canonical ``c``) in store
    ``st`` (KD setting ``key``): the seeds it does record, and those only the overlay holds."""
    have = [s for s in st.seeds if st.rows_l[st.seed_pos[s]][i] >= 0]
    main = bench._st.main
    live = [s for s in main.seeds if main.rows_l[main.seed_pos[s]][i] >= 0] if st is not main else []
    what = (
        f"architecture {i}"
        + (f" (canonical {c})" if c != i else "")
        + (f" seed {seed}" if isinstance(seed, int) else "")
        + ("" if key == bench._kd_main else f" with KD temperature {key[0]:g} alpha {key[1]:g}")
    )
    recorded = (
        f"(its recorded seeds: {have}; missing seeds are never filled from another seed)"
        if have
        else f"(recorded seeds of the table: {bench.seeds}; {len(bench.archs)} architectures)"
    )
    overlay = f"; the overlay holds seeds {live} of it (read them with include_overlay=True)" if live else ""
    return (
        f"{bench.pair}: {what} is not in the table {recorded}{overlay}; "
        "open with fallback='live' to train it with the table's recipe"
    )

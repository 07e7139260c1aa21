"""The leaderboard's statistics: bootstrap confidence intervals, paired tests, Holm's correction.

Why these: regrets are skewed and tie at zero, and runs are matched across searchers (same run index,
same visible seed), so a claim is a *paired* one-sided sign-flip permutation test on the per-run
differences (exact under the null of exchangeable searchers, no normality assumed), corrected with
Holm's step-down method across the pairs the claim is tested on. Every random draw here is seeded, so
the same runs give the same numbers.
"""

from __future__ import annotations

import zlib

import numpy as np

ALPHA = 0.05


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(key.encode()))


def bootstrap_ci(x, level: float = 0.95, n_boot: int = 4000, key: str = "ci") -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``x`` (nan values dropped)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (float("nan"), float("nan"))
    if len(x) == 1 or np.ptp(x) == 0:
        return (float(x[0]), float(x[0])) if len(x) == 1 else (float(x.mean()), float(x.mean()))
    idx = _rng(key).integers(len(x), size=(n_boot, len(x)))
    means = x[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def paired_test(diff, margin: float = 0.0, n_perm: int = 20000, key: str = "test") -> float:
    """One-sided p-value of H0: mean(diff) <= margin against mean(diff) > margin.

    ``diff``: per matched run, how much better the method is (e.g. the other searcher's regret minus the
    method's). Sign-flip permutation of ``diff - margin``: exact enumeration up to 16 runs, else
    ``n_perm`` seeded random flips; p = (1 + #{flipped mean >= observed}) / (1 + flips).
    """
    d = np.asarray(diff, dtype=float)
    d = d[np.isfinite(d)] - margin
    n = len(d)
    if n == 0 or np.all(d == 0):
        return 1.0
    obs = d.mean()
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        means = (signs * d).mean(1)
        return float(np.mean(means >= obs - 1e-12))
    signs = _rng(key).choice(np.array([-1.0, 1.0]), size=(n_perm, n))
    means = (signs * d).mean(1)
    return float((1 + np.sum(means >= obs - 1e-12)) / (1 + n_perm))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adj[i] = running
    return adj


def detectable_gain(diff, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true mean gain that a one-sided test at level ``alpha`` over these many matched runs
    detects with probability ``power``, from the spread of the observed differences (the t approximation
    of the paired test: (t_{1-alpha} + t_{power}) x sd / sqrt(n); a guide, since the sign-flip test was chosen
    because regrets are not normal). Where a claim does not hold, its runs cannot tell a gain below this from
    none with that power; about four times the runs halve it. inf where the test cannot
    reject at ``alpha`` with so few runs; nan without a spread to scale by."""
    from scipy import stats

    d = np.asarray(diff, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2 or np.ptp(d) == 0:  # no spread (e.g. both always pick the same cell): no estimate of it
        return float("nan")
    if n <= 16 and 0.5**n >= alpha:  # paired_test's smallest p over n runs is 2^-n: it can never reject
        return float("inf")
    return float((stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(power, n - 1)) * d.std(ddof=1) / np.sqrt(n))

"""Summaries over seeds and paired comparisons with a 95% t-interval.

Every comparison with the baseline is paired by seed: for the seeds where both runs finished,
``d_s = variant_s - baseline_s``; the interval is the Student t-interval of the mean difference,
``mean(d) ± t(0.975, n - 1) * std(d) / sqrt(n)`` (sample std). With 5 seeds t = 2.776, so the
half-width is 1.24 standard deviations of the differences. One pair gives no interval.

Power: the minimum detectable difference of a paired t-test (two-sided level ``alpha``, power
``1 - beta``) over ``n`` seeds whose differences have sample standard deviation ``sd`` is

    MDE = (t(1 - alpha / 2, n - 1) + t(1 - beta, n - 1)) * sd / sqrt(n)

(the usual normal-approximation formula with Student quantiles in place of normal ones). At
``alpha = 0.05``, 80% power and 5 seeds: (2.776 + 0.941) / sqrt(5) = 1.662 sd. A true
difference of that size is found (interval excludes 0) in about 80% of repeated experiments.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def summarize(values: Sequence[float | None]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max over seeds, ignoring None/NaN.

    Returns:
        ``{"n", "mean", "std", "min", "max"}``; ``std`` is 0 for one value, NaN fields for none.
    """
    clean = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if clean.size == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {"n": int(clean.size), "mean": float(clean.mean()),
            "std": float(clean.std(ddof=1)) if clean.size > 1 else 0.0,
            "min": float(clean.min()), "max": float(clean.max())}


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student t quantile ``t((1 + level) / 2, df)``."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def minimum_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true paired difference a two-sided paired t-test finds with the given power.

    Args:
        sd: sample standard deviation of the per-seed differences (same unit as the result).
        n: paired seeds (>= 2).
        alpha: two-sided significance level, in (0, 1).
        power: probability of detecting a true difference of the returned size, in (0, 1).

    Returns:
        ``(t(1 - alpha/2, n - 1) + t(power, n - 1)) * sd / sqrt(n)``; NaN when ``sd`` is NaN.

    Raises:
        ValueError: ``n`` below 2, ``sd`` negative, or ``alpha``/``power`` outside (0, 1).
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (paired seeds); received {n!r}.")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1); received alpha={alpha!r}, power={power!r}.")
    if sd < 0:
        raise ValueError(f"sd must be >= 0; received {sd!r}.")
    from scipy import stats

    factor = float(stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1))
    return factor * sd / math.sqrt(n)


def seeds_needed(sd: float, target: float, alpha: float = 0.05, power: float = 0.8, limit: int = 1000) -> int | None:
    """Fewest paired seeds whose :func:`minimum_detectable_difference` is at most ``target``.

    Returns:
        n in [2, limit], or None when even ``limit`` seeds do not reach it (or ``sd`` is NaN).

    Raises:
        ValueError: ``target`` not positive.
    """
    if not target > 0:
        raise ValueError(f"target must be > 0; received {target!r}.")
    if math.isnan(sd):
        return None
    for n in range(2, limit + 1):
        if minimum_detectable_difference(sd, n, alpha, power) <= target:
            return n
    return None


def paired_difference(variant: Sequence[float], baseline: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean of ``variant - baseline`` over paired seeds, with its t-interval.

    Args:
        variant, baseline: equally long, one value per seed in the same seed order; pairs with a
            None/NaN on either side are dropped.
        level: confidence level of the interval.

    Returns:
        ``{"n", "mean", "std", "low", "high", "wins"}``: ``wins`` counts seeds where the variant
        is higher; ``low``/``high`` are NaN for fewer than two pairs.
    """
    if len(variant) != len(baseline):
        raise ValueError(f"variant and baseline must pair up; received {len(variant)} and {len(baseline)} values.")
    pairs = [(v, b) for v, b in zip(variant, baseline)
             if v is not None and b is not None and not math.isnan(v) and not math.isnan(b)]
    d = np.array([v - b for v, b in pairs], dtype=np.float64)
    out = {"n": int(d.size), "mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan,
           "wins": int((d > 0).sum())}
    if d.size == 0:
        return out
    out["mean"] = float(d.mean())
    if d.size > 1:
        out["std"] = float(d.std(ddof=1))
        half = t_quantile(d.size - 1, level) * out["std"] / math.sqrt(d.size)
        out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out


def paired_by_seed(runs: Sequence[dict], variant: str, key: str, reference: str = "baseline") -> dict[str, float]:
    """:func:`paired_difference` of metric ``key`` between two variants' finished runs."""
    def by_seed(name: str) -> dict[int, float]:
        return {r["seed"]: r["metrics"].get(key) for r in runs if r["variant"] == name and r.get("status") == "ok"}

    mine, base = by_seed(variant), by_seed(reference)
    seeds = sorted(set(mine) & set(base))
    return paired_difference([mine[s] for s in seeds], [base[s] for s in seeds])


def format_difference(diff: dict[str, float], scale: float = 100.0, digits: int = 1, unit: str = "") -> str:
    """``+6.3 [+1.2, +11.4]`` (``scale`` 100 turns fractions into points); ``-`` with no pair."""
    if diff["n"] == 0:
        return "-"
    text = f"{scale * diff['mean']:+.{digits}f}{unit}"
    if diff["n"] > 1:
        text += f" [{scale * diff['low']:+.{digits}f}, {scale * diff['high']:+.{digits}f}]"
    return text


def includes_zero(diff: dict[str, float]) -> bool:
    """Whether the interval includes 0 (True when there is no interval)."""
    return diff["n"] < 2 or not (diff["low"] > 0 or diff["high"] < 0)

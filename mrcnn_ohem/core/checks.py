"""Argument checks shared by every layer: one wording, raised before any work is done.

Each check returns the value in its canonical Python type, or raises ``ValueError`` worded
``"{name} must be {what is allowed}; received {value!r}"``, so a message always names the
argument, the allowed values and what was received. Booleans are never accepted as numbers.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any

import numpy as np

__all__ = ["is_int", "is_real", "fail", "check_int", "check_number", "check_bool", "check_choice"]


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for finite-or-not real numbers (ints included), False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def fail(name: str, expected: str, value: Any) -> None:
    """Raise the one ``ValueError`` wording of this package."""
    raise ValueError(f"{name} must be {expected}; received {value!r}")


def check_int(name: str, value: Any, minimum: int = 0, *, maximum: int | None = None,
              allow_none: bool = False, hint: str = "") -> int | None:
    """``value`` as an int in ``[minimum, maximum]`` (None passes through when allowed)."""
    if value is None and allow_none:
        return None
    within = is_int(value) and value >= minimum and (maximum is None or value <= maximum)
    if not within:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        fail(name, ("None or " if allow_none else "") + f"an integer {bound}{hint}", value)
    return int(value)


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False,
                 hint: str = "") -> float | None:
    """``value`` as a finite float in the interval ``low..high`` (open ends as asked)."""
    if value is None and allow_none:
        return None
    ok = is_real(value) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        if math.isinf(high) and not math.isinf(low):
            interval = f"{'>' if low_open else '>='} {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        fail(name, ("None or " if allow_none else "") + f"a number {interval}{hint}", value)
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is exactly True or False."""
    if not isinstance(value, (bool, np.bool_)):
        fail(name, "True or False", value)
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        fail(name, f"one of {list(choices)}", value)
    return value

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
    """True for Python and NumPy integers, False for bools.

    Args:
        value: any object.
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for finite-or-not real numbers (ints included), False for bools.

    Args:
        value: any object.
    """
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def fail(name: str, expected: str, value: Any) -> None:
    """Raise the one ``ValueError`` wording of this package.

    Args:
        name: the argument's name, as the caller knows it (e.g. ``"OHEM_TOP_K"``).
        expected: what is allowed, worded to follow "must be" (e.g. ``"an integer >= 1"``).
        value: what was received; the message shows its ``repr``.

    Raises:
        ValueError: always, worded ``"{name} must be {expected}; received {value!r}"``.
    """
    raise ValueError(f"{name} must be {expected}; received {value!r}")


def check_int(name: str, value: Any, minimum: int = 0, *, maximum: int | None = None,
              allow_none: bool = False, hint: str = "") -> int | None:
    """``value`` as an int in ``[minimum, maximum]`` (None passes through when allowed).

    Args:
        name: the argument's name, for the message.
        value: the value to check: a Python or NumPy integer (not a bool).
        minimum: the smallest allowed value (inclusive).
        maximum: the largest allowed value (inclusive); None for no upper bound.
        allow_none: accept None (and return it).
        hint: text appended to the "must be" part of the message (e.g. ``" (None: no ratio)"``).

    Returns:
        ``int(value)``, or None when ``value`` is None and ``allow_none``.

    Raises:
        ValueError: ``value`` is not an integer in range (see :func:`fail`).
    """
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
    """``value`` as a finite float in the interval ``low..high`` (open ends as asked).

    Args:
        name: the argument's name, for the message.
        value: the value to check: a real number (ints included, bools not); NaN and
            infinities are refused.
        low: the lower bound (default: none).
        high: the upper bound (default: none).
        low_open: exclude ``low`` itself (``value > low`` instead of ``>=``).
        high_open: exclude ``high`` itself (``value < high`` instead of ``<=``).
        allow_none: accept None (and return it).
        hint: text appended to the "must be" part of the message.

    Returns:
        ``float(value)``, or None when ``value`` is None and ``allow_none``.

    Raises:
        ValueError: ``value`` is not a finite number in the interval (see :func:`fail`).
    """
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
    """``value`` if it is exactly True or False.

    Args:
        name: the argument's name, for the message.
        value: the value to check: a Python or NumPy bool (0 and 1 are refused).

    Returns:
        ``bool(value)``.

    Raises:
        ValueError: ``value`` is not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        fail(name, "True or False", value)
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        choices: the allowed values (compared with ``in``; the message lists them).

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: ``value`` is not in ``choices``.
    """
    if value not in choices:
        fail(name, f"one of {list(choices)}", value)
    return value

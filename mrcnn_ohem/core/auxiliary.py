"""Auxiliary metrics: named scalars a loss graph reports to whatever training loop listens.

A loss graph returns one scalar (Matterport's signature), yet some losses know more, e.g. how
many examples an OHEM selection kept. They pass it on with :func:`record`; a training loop that
wants the values opens :func:`recording` around the forward pass and reads them afterwards::

    with auxiliary.recording() as recorded:          # training loop (e.g. a Keras train_step)
        outputs = model(x, training=True)             # somewhere inside, a loss graph calls
    recorded.values  # {"name": scalar tensor}        #   auxiliary.record("name", scalar)

Without an open recording, :func:`record` does nothing, so a loss that reports costs nothing to
a loop that does not listen. Recordings are per thread (``tf.distribute`` replicas run in their
own threads) and nest (the innermost one receives). The same mechanism, opened while a Keras
model is built, tells the loop which names to expect (the bundled model creates one metric per
name then). Names should be unique: a second :func:`record` of a name replaces the first.
Neutral: no Config, no Keras model, no OHEM.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

__all__ = ["Recording", "recording", "record", "listening"]

_LOCAL = threading.local()


class Recording:
    """What :func:`recording` yields: ``values`` maps each recorded name to its last value."""

    def __init__(self) -> None:
        self.values: OrderedDict[str, Any] = OrderedDict()

    @property
    def names(self) -> list[str]:
        """The recorded names, in first-recorded order."""
        return list(self.values)


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Collect the :func:`record` calls made in this thread until the block ends."""
    stack = _LOCAL.__dict__.setdefault("stack", [])
    current = Recording()
    stack.append(current)
    try:
        yield current
    finally:
        stack.remove(current)


def record(name: str, value: Any) -> bool:
    """Report a scalar ``value`` (a tensor or a number) under ``name``.

    Args:
        name: the key the listening loop reads it under (converted with ``str``); a second
            record of a name replaces the first.
        value: a scalar: a shape [] tensor (any dtype) or a Python number, stored as given.

    Returns:
        True if an open :func:`recording` received it, False if nobody listens.
    """
    stack = getattr(_LOCAL, "stack", None)
    if not stack:
        return False
    stack[-1].values[str(name)] = value
    return True


def listening() -> bool:
    """True when a :func:`recording` is open in this thread (so :func:`record` would be heard)."""
    return bool(getattr(_LOCAL, "stack", None))

"""Per-image random draws that give the same batches whatever order loader threads run in.

Matterport's data pipeline draws from the process-global generators: NumPy's (``np.random``) for
the RPN anchor subsampling, the random RoIs, the flips and the negative pool, and Python's
(``random``) for the crop position. With Keras loading batches on several threads, the images
of an epoch take their draws from one global stream in whatever order the threads reach it, so
even a seeded run changes from one run to the next.

The pipeline functions keep Matterport's signatures and ask this module for the generator to
draw from: :func:`numpy_random` and :func:`python_random`. Outside :func:`image_random_state`
they return the global ``np.random`` and ``random`` modules, exactly as Matterport draws. A
seeded ``DataGenerator`` opens :func:`image_random_state` around each image, with generators
seeded from ``(seed, epoch, position in the epoch)``: each image's draws then depend on nothing
but its place in the run, and the state is thread-local, so threads cannot share it.

Both objects offer the legacy APIs: ``np.random.RandomState`` has the methods of the
``np.random`` module (``randint``, ``choice``, ``shuffle``), ``random.Random`` those of the
``random`` module.
"""
from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["image_random_state", "numpy_random", "python_random", "image_seed"]

_LOCAL = threading.local()


def image_seed(seed: int, *keys: int) -> np.random.SeedSequence:
    """The seed sequence of one image: ``seed`` and its place (for example epoch and position).

    Args:
        seed: the run's seed (int >= 0).
        keys: ints >= 0 that name the image's place in the run.

    Returns:
        A ``np.random.SeedSequence``; equal arguments give equal sequences.
    """
    return np.random.SeedSequence([int(seed), *(int(k) for k in keys)])


@contextlib.contextmanager
def image_random_state(sequence: np.random.SeedSequence) -> Iterator[None]:
    """Draw from generators seeded by ``sequence`` in this thread until the block ends.

    Args:
        sequence: from :func:`image_seed`.

    Yields:
        None; :func:`numpy_random` and :func:`python_random` return this block's generators on
        the calling thread. Blocks nest; the outer state comes back on exit.
    """
    words = sequence.generate_state(4)  # [4] uint32
    state = (np.random.RandomState(words), random.Random(int.from_bytes(words.tobytes(), "little")))
    outer = getattr(_LOCAL, "state", None)
    _LOCAL.state = state
    try:
        yield
    finally:
        _LOCAL.state = outer


def numpy_random() -> Any:
    """The NumPy generator to draw from: this thread's image state, else the ``np.random`` module."""
    state = getattr(_LOCAL, "state", None)
    return np.random if state is None else state[0]


def python_random() -> Any:
    """Python's generator to draw from: this thread's image state, else the ``random`` module."""
    state = getattr(_LOCAL, "state", None)
    return random if state is None else state[1]

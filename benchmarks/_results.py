"""Write one benchmark's section of ``benchmarks/RESULTS.md`` without touching the others.

Each benchmark owns the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; a
missing section is appended. Sections hold the machine, the exact command and the table.
"""
from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in it; numbers are real runs.\n"


def machine_line() -> str:
    """One line naming the CPU count, Python, TensorFlow and NumPy versions."""
    import numpy as np
    import tensorflow as tf

    return (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, NumPy {np.__version__}"
    )


def command_line() -> str:
    """The command that is running, as a user would type it from the repo root."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        # ``python -m package`` runs ``package/__main__.py``, whose spec is ``package.__main__``.
        name = spec.name.removesuffix(".__main__")
        head = ["python", "-m", name]
    else:
        head = ["python", os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "?"]
    return " ".join(shlex.quote(part) for part in [*head, *sys.argv[1:]])


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``name`` of the results file with ``body``."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def load_average() -> str:
    """The 1, 5 and 15-minute load averages from ``/proc/loadavg`` ("unknown" elsewhere)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "unknown"


def interleave(functions: dict, rounds: int, warmup: int = 1, clock=None) -> dict[str, list[float]]:
    """Seconds per call of each function, measured side by side in this process.

    Every round calls each function once, in alternating order (forward on even rounds,
    reversed on odd ones), so a change in machine load reaches all variants alike.

    Args:
        functions: name -> callable taking no arguments.
        rounds: timed calls per function.
        warmup: untimed rounds first (tracing, caches).
        clock: time source (default ``time.perf_counter``); for tests.

    Returns:
        name -> list of ``rounds`` durations in seconds, in call order.
    """
    import time

    clock = clock or time.perf_counter
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = clock()
            functions[name]()
            times[name].append(clock() - start)
    return times


def median_and_spread(values) -> tuple[float, float, float]:
    """(median, min, max) of ``values``."""
    import statistics

    values = list(values)
    return statistics.median(values), min(values), max(values)

"""How long anchor labelling (``mrcnn_ohem.core.matching.match_anchors``) takes at 1024x1024.

Matterport's 261,888 anchors of a 1024x1024 input (ResNet strides 4..64, scales 32..512, ratios
0.5/1/2) against random scenes of 1 to 100 integer GT boxes 30-300 pixels wide (Matterport's
``MAX_GT_INSTANCES`` is 100). Each row is the median of ``--repeats`` calls after two warm-up
calls (the first call of a process also builds the anchors' sorted index; it is timed apart).

``--baseline-tree DIR`` also times the ``mrcnn_ohem`` found in DIR (for example an exported older
commit: ``git archive <rev> | tar -x -C DIR``), alternating baseline and current rounds, each in
its own process, so both see the same machine load.

Run from the repo root: ``python -m benchmarks.match_speed [--baseline-tree DIR] [--write]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GT_COUNTS = (1, 3, 10, 30, 100)
IMAGE_SIZE = 1024


def full_size_anchors() -> np.ndarray:
    """[261888, (y1, x1, y2, x2)] float64: Matterport's default anchors of a 1024x1024 input."""
    from mrcnn_ohem.maskrcnn.anchors import generate_pyramid_anchors

    strides = [4, 8, 16, 32, 64]
    shapes = [[IMAGE_SIZE // s, IMAGE_SIZE // s] for s in strides]
    return generate_pyramid_anchors((32, 64, 128, 256, 512), [0.5, 1, 2], shapes, strides, 1)


def scene(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` integer GT boxes (class 1), 30-300 pixels a side, inside the image."""
    rng = np.random.default_rng([seed, count])
    corner = rng.uniform(0, IMAGE_SIZE - 30, (count, 2))
    size = rng.uniform(30, 300, (count, 2))
    boxes = np.concatenate([corner, np.minimum(corner + size, IMAGE_SIZE)], axis=1).round()
    return np.ones(count, np.int32), boxes.astype(np.int32)


def time_once(repeats: int) -> dict:
    """Run in a fresh process: {"first_ms", "rows": {gt count: median ms}, "anchors"}."""
    from mrcnn_ohem.core.matching import match_anchors

    anchors = full_size_anchors()
    ids, boxes = scene(3)
    start = time.perf_counter()
    match_anchors(anchors, ids, boxes)
    first = 1000 * (time.perf_counter() - start)
    rows = {}
    for count in GT_COUNTS:
        ids, boxes = scene(count)
        match_anchors(anchors, ids, boxes)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            match_anchors(anchors, ids, boxes)
            times.append(time.perf_counter() - start)
        rows[count] = 1000 * statistics.median(times)
    return {"first_ms": first, "rows": rows, "anchors": int(anchors.shape[0])}


def run_child(tree: Path, repeats: int) -> dict:
    """``time_once`` in a subprocess importing ``mrcnn_ohem`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--child", str(repeats)], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:  # one timing process (see run_child)
        print(json.dumps(time_once(int(argv[1]))))
        return 0
    from benchmarks._results import command_line, machine_line, write_section

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed calls per row (median reported)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per variant, alternating")
    parser.add_argument("--baseline-tree", type=Path, help="a source tree whose mrcnn_ohem is the baseline")
    parser.add_argument("--baseline-name", default="baseline", help="how the table names the baseline")
    parser.add_argument("--write", action="store_true", help="write the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    variants = ([(args.baseline_name, args.baseline_tree)] if args.baseline_tree else []) + [("current", REPO)]
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, tree in variants:
            runs[name].append(run_child(tree, args.repeats))
    load_after = os.getloadavg()

    def median(name, key):
        values = [r["first_ms"] if key == "first" else r["rows"][str(key)] for r in runs[name]]
        return statistics.median(values)

    names = [name for name, _ in variants]
    header = "| GT boxes | " + " | ".join(f"{n} (ms)" for n in names)
    header += " | current / baseline |" if args.baseline_tree else " |"
    lines = [header, "| ---: " * (len(names) + 1 + bool(args.baseline_tree)) + "|"]
    for key in ("first", *GT_COUNTS):
        cells = [median(n, key) for n in names]
        label = "1st call (3 boxes)" if key == "first" else str(key)
        row = f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells)
        row += f" | {cells[-1] / cells[0]:.2f} |" if args.baseline_tree else " |"
        lines.append(row)
    anchors = runs["current"][0]["anchors"]
    body = "\n".join([
        "## Anchor labelling at 1024x1024 (`benchmarks/match_speed.py`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}",
        "",
        f"`match_anchors` over {anchors:,} anchors, integer GT boxes 30-300 px; median of {args.repeats} calls "
        f"after 2 warm-ups, then the median over {args.rounds} process(es) per variant, alternating. "
        f"1-, 5-, 15-minute load average {load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} "
        f"before and {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f} after (2 cores shared "
        "with other jobs: absolute times are inflated, the ratio is the number to read).",
        "",
        *lines,
    ])
    print(body)
    if args.write:
        write_section("match_speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

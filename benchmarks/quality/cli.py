"""Command line of the quality benchmark: ``python -m benchmarks.quality`` (run from the repo root).

Synthetic mode (default), two regimes on generated shapes with look-alike distractors:

- ``--regime finetune`` (the default, issue 28): every variant fine-tunes the same checkpoint
  (:mod:`benchmarks.quality.pretrain`, built first when this code has none), paired by seed, and
  is scored on 300 validation images; the summary with paired SDs and 80%-power minimum
  detectable differences goes to ``benchmarks/results/quality_finetune.json`` (``--write``);
- ``--regime scratch``: every variant trains from random weights for 600 steps (the earlier
  design, kept as a second, labelled regime; ``--quick`` uses it).

Each variant runs ``--seeds`` times (default 5) and is compared with the baseline paired by
seed; then the variants' step times are measured side by side in one process, and baseline vs
OHEM runs once on ``../shared/data/coco_mini`` as a pipeline check (not a measurement)::

    python -m benchmarks.quality --write                 # fine-tune, 10 variants x 5 seeds: hours on 2 CPU cores
    python -m benchmarks.quality --regime scratch --write
    python -m benchmarks.quality --quick                 # CI-sized, 1.5 to 3.5 minutes, numbers meaningless

Real-image mode: the same paired comparison as a fine-tune from Matterport's COCO weights on a
COCO-format folder (``annotations/instances_{train,val}2017.json`` + ``train2017/``, ``val2017/``)::

    python -m benchmarks.quality --dataset /data/coco --weights mask_rcnn_coco.h5 \\
        --classes person car --image-size 1024 --steps 2000 --variants baseline ohem

It uses ResNet-50 at the given size, batch 1, lr 0.001, Matterport's heads (256-filter mask
head, 200 RoIs), trains ``--layers heads`` by default and evaluates on ``--val-images`` images
(default 500). Expected time per step, extrapolated, not measured at 1024 px: the train-step
benchmark measured 11.9 s for ResNet-50 at 256 px, batch 2, on 2 CPU cores; 1024 px, batch 1 has 8x
the pixels, so roughly 1.5 minutes per step on such a CPU (2000 steps: about 2 days per run, x 2
variants x 5 seeds). It is meant for a GPU; time ``--steps 20`` there first and multiply. On 2 CPU
cores, the ``coco_mini`` run of the synthetic mode is the pipeline check.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.quality import report as rep
from benchmarks.quality.runs import graph_optimizations_off, run_one, run_suite, worker_main
from benchmarks.quality.variants import (
    COCO_FULL,
    COCO_QUICK,
    DEFAULT_COCO_MINI,
    FULL,
    NAMED,
    QUICK,
    REAL,
    VARIANTS,
    Budget,
    split_available,
)

PLOT = Path(__file__).resolve().parents[1] / "quality.png"
MINING_PLOT = PLOT.with_name("quality_mining.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--regime", choices=("finetune", "scratch"), default=None,
                        help="fine-tune the pretrained checkpoint (default) or train from random weights "
                             "(default with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized run: 2 seeds, 2 steps at 64 px, in one process (1.5 to 3.5 minutes on 2 cores)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default 5, quick 2)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="variants to run (baseline is always added); unavailable ones are skipped")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--budget", default=None, metavar="NAME_OR_JSON",
                        help=f"a named budget ({', '.join(NAMED)}) or Budget fields to override, e.g. "
                             '\'{"learning_rate": 0.02}\'')
    parser.add_argument("--in-process", action="store_true",
                        help="run everything in this process (default: one subprocess per run; quick: in process)")
    parser.add_argument("--no-timing", action="store_true", help="skip the side-by-side step timing (quick: skipped)")
    parser.add_argument("--coco-mini", type=Path, default=DEFAULT_COCO_MINI, metavar="PATH",
                        help="real COCO subset for the pipeline check (default ../shared/data/coco_mini)")
    parser.add_argument("--no-coco", action="store_true", help="skip the coco_mini pipeline check")
    real = parser.add_argument_group("real images (fine-tune from Matterport weights)")
    real.add_argument("--dataset", type=Path, default=None, metavar="DIR", help="COCO-format folder: real-image mode")
    real.add_argument("--weights", type=Path, default=None, help="Matterport .h5 weights to start from")
    real.add_argument("--classes", nargs="+", default=None, metavar="NAME_OR_ID", help="classes to fine-tune on")
    real.add_argument("--image-size", type=int, default=None, help="square input side (real mode default 1024)")
    real.add_argument("--val-images", type=int, default=None, help="evaluation images (real mode default 500)")
    real.add_argument("--layers", default=None, help="layers to train (real mode default heads)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temp folder)")
    parser.add_argument("--resume", action="store_true",
                        help="read back the runs --out already holds for the same spec instead of running them")
    parser.add_argument("--report-only", action="store_true",
                        help="with --resume: run nothing, report the finished runs --out holds")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed")
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md and the plots")
    parser.add_argument("--results", type=Path, default=None, help="write the section to this file instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def _budget(args: argparse.Namespace) -> Budget:
    from benchmarks.quality.finetune import FINETUNE

    if args.dataset:
        budget = REAL
    elif args.quick:
        budget = QUICK
    else:
        budget = FINETUNE if args.regime == "finetune" else FULL
    changes = {"steps": args.steps, "image_size": args.image_size, "val_images": args.val_images,
               "layers": args.layers}
    budget = replace(budget, **{k: v for k, v in changes.items() if v is not None})
    if args.budget in NAMED:
        budget = replace(NAMED[args.budget], **{k: v for k, v in changes.items() if v is not None})
    elif args.budget:
        try:
            fields = json.loads(args.budget)
            budget = replace(budget, **fields)
        except (ValueError, TypeError) as err:
            raise SystemExit(f"--budget must be one of {list(NAMED)} or a JSON object of Budget fields "
                             f"({', '.join(Budget.__dataclass_fields__)}); received {args.budget!r} ({err})") from None
    return budget


def _timing(args, variants, budget, out) -> dict | None:
    if args.no_timing or args.quick:  # quick: the timing would double the run's model builds
        return None
    (out / "timing").mkdir(exist_ok=True)
    spec = {"variant": "timing", "seed": 0, "dataset": "timing", "budget": asdict(budget),
            "variants": list(variants), "rounds": 40, "model_dir": str(out / "timing")}
    timing = run_one(spec, out / "timing.log", args.timeout, args.in_process)
    if timing.get("status") == "ok":
        print(rep.timing_table(timing), flush=True)
    return timing


def _coco_check(args, budget: Budget, out: Path) -> dict:
    """baseline vs OHEM once on coco_mini, labelled a pipeline check."""
    coco_budget = COCO_QUICK if args.quick else COCO_FULL
    folder = args.coco_mini.resolve()
    title = "Real COCO images (`coco_mini`): a pipeline check, not a measurement"
    if args.no_coco:
        return {"title": title, "note": "Skipped (`--no-coco`).", "runs": []}
    if not (folder / "annotations" / "instances_train2017.json").is_file():
        return {"title": title, "note": f"Skipped: no COCO folder at `{args.coco_mini}`.", "runs": []}
    runs = run_suite("coco", ["baseline", "ohem"], [0], coco_budget, out, args.timeout,
                     {"data_dir": str(folder)}, in_process=args.in_process)
    note = (f"Train on coco_mini train2017, evaluate on val2017, classes person, car; {rep.budget_line(coco_budget)}; "
            "seed 0, random initial weights, 2 CPU cores. At this budget the numbers are near zero and say nothing "
            "about OHEM on COCO: the run only shows that the pipeline works on real images. For a measurement, "
            "use the real-image mode (`--dataset DIR --weights mask_rcnn_coco.h5 ...`, see the module docstring).")
    return {"title": title, "note": note, "runs": runs}


def _real_mode(args, variants, seeds, budget, out) -> int:
    from benchmarks._results import write_section

    if not args.weights or not args.weights.is_file():
        print(f"--weights: a Matterport .h5 file is needed in real-image mode; received {args.weights}",
              file=sys.stderr)
        return 2
    extra = {"data_dir": str(args.dataset.resolve()), "classes": args.classes, "weights": str(args.weights.resolve())}
    runs = run_suite("real", variants, seeds, budget, out, args.timeout, extra, in_process=args.in_process)
    (out / "runs.json").write_text(json.dumps({"real": runs}, indent=1))
    metrics = tuple(m for m in rep.METRICS if m[0] != "fp_distractors")
    text = "\n".join([
        "## Quality on real images (`python -m benchmarks.quality --dataset ...`)", "",
        f"Fine-tune from `{args.weights.name}` on `{args.dataset}`, classes {args.classes}; {rep.budget_line(budget)}; "
        f"seeds {seeds}; {rep.load_note(runs)}.", "",
        rep.markdown_table(rep.aggregate(runs, variants, metrics), metrics, runs=runs), "",
        rep.paired_table(runs, variants), "", *rep.interval_sentences(runs, variants)])
    print(text)
    (out / "report.md").write_text(text + "\n")
    if args.write:
        write_section("quality_real", text, **({"path": args.results} if args.results else {}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow is imported (here and in the worker subprocesses)
    args = build_parser().parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        (Path(spec["model_dir"]) / "result.json").write_text(json.dumps(worker_main(spec), indent=1))
        return 0
    args.in_process = args.in_process or args.quick
    args.regime = args.regime or ("scratch" if args.quick or args.dataset else "finetune")
    variants, skipped = split_available(list(dict.fromkeys(["baseline", *args.variants])))
    for variant, reason in skipped.items():
        print(f"{variant}: {reason}", flush=True)
    budget = _budget(args)
    seeds = list(range(args.seeds if args.seeds else (2 if args.quick else 5)))
    out = args.out or Path(tempfile.mkdtemp(prefix="mrcnn_ohem_quality_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"work folder {out}; {len(variants)} variants x {len(seeds)} seeds; {rep.budget_line(budget)}", flush=True)
    if args.dataset:
        return _real_mode(args, variants, seeds, budget, out)
    if args.regime == "finetune":
        return _finetune_mode(args, variants, skipped, seeds, budget, out)
    return _synthetic_mode(args, variants, skipped, seeds, budget, out)


def _finetune_mode(args, variants, skipped, seeds, budget, out) -> int:
    from benchmarks._results import RESULTS, write_section
    from benchmarks.quality import finetune, pretrain
    from mrcnn_ohem.datasets.shapes import write_coco_folder

    started = time.perf_counter()
    key = pretrain.checkpoint_key()
    path = pretrain.find_checkpoint(key)
    if path is None:
        print(f"no checkpoint for key {key} (code or settings changed): building it with "
              f"`{pretrain.rebuild_command()}` first", flush=True)
        path = pretrain.build(key, out / "pretrain")
    record = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
    checkpoint = {"key": key, "file": str(path.relative_to(pretrain.REPO) if path.is_relative_to(pretrain.REPO)
                                          else path),
                  "AP50": record.get("final", {}).get("bbox_AP50"), "command": pretrain.rebuild_command()}
    print(f"fine-tuning from {checkpoint['file']} (AP50 {checkpoint['AP50']})", flush=True)
    val_dir = out / "shapes_coco"
    write_coco_folder(val_dir, "val", budget.val_images, budget.image_size, budget.image_size, budget.val_seed,
                      max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    # The step timing first: a design run in pieces and stopped early still has it.
    timing = None if args.report_only else _timing(args, variants, budget, out)
    runs = run_suite("shapes", variants, seeds, budget, out, args.timeout, {"val_dir": str(val_dir), "init": str(path)},
                     in_process=args.in_process, resume=args.resume, run=not args.report_only)
    timing_file = out / "timing" / "result.json"
    if timing is None and timing_file.is_file():  # measured by an earlier piece of the design
        timing = json.loads(timing_file.read_text())
    (out / "runs.json").write_text(json.dumps({"shapes": runs, "timing": timing, "skipped": skipped}, indent=1))
    document = finetune.summary_document(runs, variants, budget, checkpoint)
    document["positives_in_random_sample"] = finetune.positives_in_random_sample(budget)
    finetune.write_summary(document, out / "quality_finetune.json")
    text = finetune.section(document, runs, budget, variants, skipped, timing)
    (out / "report.md").write_text(text + "\n")
    print(text)
    print(f"total {time.perf_counter() - started:.0f} s; report {out / 'report.md'}; raw results {out / 'runs.json'}")
    if args.write:
        summary = args.results.with_name(finetune.SUMMARY.name) if args.results else finetune.SUMMARY
        finetune.write_summary(document, summary)
        plot_path = args.results.with_name(PLOT.name) if args.results else PLOT
        finetune.plot_differences(document, plot_path, f"Fine-tuning from the shapes checkpoint: {len(seeds)} "
                                  f"paired seeds, {budget.steps} steps, {budget.val_images} validation images")
        write_section("quality_finetune", text, **({"path": args.results} if args.results else {}))
        print(f"wrote {summary}, {plot_path} and the 'quality_finetune' section of {args.results or RESULTS}")
    return 0


def _synthetic_mode(args, variants, skipped, seeds, budget, out) -> int:
    from benchmarks._results import RESULTS, write_section
    from mrcnn_ohem.datasets.shapes import write_coco_folder

    started = time.perf_counter()
    val_dir = out / "shapes_coco"
    write_coco_folder(val_dir, "val", budget.val_images, budget.image_size, budget.image_size, budget.val_seed,
                      max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    with graph_optimizations_off(args.quick):
        runs = run_suite("shapes", variants, seeds, budget, out, args.timeout, {"val_dir": str(val_dir)},
                         in_process=args.in_process)
    timing = _timing(args, variants, budget, out)
    coco = _coco_check(args, budget, out)
    (out / "runs.json").write_text(json.dumps({"shapes": runs, "coco": coco["runs"], "timing": timing,
                                               "skipped": skipped}, indent=1))
    text = rep.report(runs, budget, variants, skipped, args.quick, timing, coco)
    (out / "report.md").write_text(text + "\n")
    print(rep.paired_table(runs, variants, timing))
    print(f"total {time.perf_counter() - started:.0f} s; report {out / 'report.md'}; raw results {out / 'runs.json'}")
    if args.write:
        plot_path = args.results.with_name(PLOT.name) if args.results else PLOT
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        rep.plot(rep.aggregate(runs, variants), plot_path,
                 f"OHEM variants, synthetic shapes, {len(seeds)} seed(s), {budget.steps} steps")
        curves = rep.mining_curves(runs, variants)
        if curves:
            rep.plot_mining(curves, plot_path.with_name(MINING_PLOT.name))
        write_section("quality", text, **({"path": args.results} if args.results else {}))
        print(f"wrote {plot_path} and the 'quality' section of {args.results or RESULTS}")
    return 0

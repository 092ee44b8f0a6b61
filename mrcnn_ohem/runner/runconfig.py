"""One run config from ``train`` to ``evaluate`` and ``predict``, checked before TensorFlow loads.

:func:`resolve` completes the options :func:`mrcnn_ohem.runner.cli.build_parser` parsed:

1. OHEM options imply their switch (:data:`~.settings.RPN_KNOBS` imply ``--ohem``,
   :data:`~.settings.ROI_KNOBS` ``--ohem-roi``); with ``--no-ohem`` / ``--no-ohem-roi`` they are
   refused. The OHEM values are validated as the config will validate them.
2. Paths are checked: the dataset's annotation file, ``--model PATH``, the ImageNet file,
   ``--images``.
3. The weights to load are found (``args.weights_path``): ``--model last`` is the newest
   checkpoint of the run name (``train``), or of the newest run of the prefix or ``--name``
   (``evaluate``, ``predict``).
4. The run that wrote them (its ``run.json``) fixes what shapes the model: the model options
   (:data:`~.settings.RUN_OPTIONS`) and ``--classes`` are taken from it, and a flag that gives
   another value is refused, naming both. ``train`` reads the run only when it resumes it
   (``--model last``); fine-tuning from a file may change them.
5. What is still unset gets its default (:func:`fill_defaults`), the same for every caller.

Nothing here imports TensorFlow, Keras or the model.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mrcnn_ohem.maskrcnn.checkpoints import find_last
from mrcnn_ohem.runner.settings import (
    CPU_BACKBONES,
    CPU_MASK_HEAD_FILTERS,
    CPU_SETTINGS,
    ROI_KNOBS,
    RPN_KNOBS,
    RUN_OPTIONS,
)

logger = logging.getLogger(__name__)

__all__ = ["resolve", "fill_defaults", "read_run", "find_last_run", "run_name", "rpn_patched", "uses_patch",
           "IMAGE_SUFFIXES"]

#: Files ``predict`` reads from a folder given to ``--images``.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Matterport's mask-head width, which its weight files expect (``Config.MASK_HEAD_FILTERS``).
_MATTERPORT_MASK_HEAD_FILTERS = 256


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Check and complete ``args`` in place (see the module docstring); idempotent.

    Args:
        args: the options :func:`~mrcnn_ohem.runner.cli.build_parser` parsed, for any command
            (``args.command``: ``"train"``, ``"evaluate"`` or ``"predict"``); gains
            ``weights_path``, ``run`` and ``resolved``.

    Returns:
        ``args`` itself.

    Raises:
        ValueError: contradicting or out-of-range options.
        FileNotFoundError: a path, or the run ``--model last`` names, does not exist.
    """
    if getattr(args, "resolved", False):
        return args
    _check_numbers(args)
    if args.command == "train":
        _imply_switches(args)
    _check_paths(args)
    args.weights_path = _weights_path(args)
    resumes = args.command != "train" or (args.model or "").lower() == "last"
    args.run = read_run(args.weights_path) if resumes else None
    if args.run is not None:
        _take_run_options(args, args.run)
    fill_defaults(args)
    if args.command == "train":
        _check_ohem_values(args)
    args.resolved = True
    return args


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Give every option still None its default, in place; idempotent.

    Image size and backbone come from the command's defaults; the smallest anchor is
    ``anchor_fraction`` of the image side (at least 8 px); the mask head is 64 filters wide on
    the CPU backbones and 256 (Matterport's) on the ResNets; BatchNorm trains on the CPU
    backbones and whenever training starts from random weights (frozen initial statistics do
    not learn), and is frozen otherwise, as Matterport freezes it for its pretrained ResNets.

    Args:
        args: parsed options, or any namespace with at least ``command``; attributes it lacks
            are added with their defaults.

    Returns:
        ``args`` itself.
    """
    defaults = getattr(args, "sample_defaults", {}) or {}
    for name in ("image_size", "backbone"):
        if getattr(args, name, None) is None:
            setattr(args, name, defaults.get(name, {"image_size": 512, "backbone": "resnet50"}[name]))
    cpu = args.backbone in CPU_BACKBONES
    if getattr(args, "anchor_base", None) is None:
        args.anchor_base = max(8, round(getattr(args, "anchor_fraction", 32 / 1024) * int(args.image_size)))
    if getattr(args, "mask_head_filters", None) is None:
        args.mask_head_filters = CPU_MASK_HEAD_FILTERS if cpu else _MATTERPORT_MASK_HEAD_FILTERS
    from_scratch = args.command == "train" and (getattr(args, "model", None) or "none").lower() == "none"
    if getattr(args, "train_bn", None) is None:
        args.train_bn = cpu or from_scratch
        if from_scratch and not cpu:
            logger.info("Training %s from random weights: BatchNorm trains (TRAIN_BN = True); --no-train-bn "
                        "freezes it.", args.backbone)
    elif args.train_bn is False and from_scratch:
        logger.warning("Training %s from random weights with BatchNorm frozen (--no-train-bn): its initial "
                       "statistics never change and the heads barely learn. Use --train-bn, or start from "
                       "weights (--model imagenet or a .h5 file).", args.backbone)
    for name in ("ohem", "ohem_roi", "ohem_pooled"):
        if getattr(args, name, False) is None:
            setattr(args, name, False)
    if getattr(args, "ohem_min_negatives", 0) is None:
        args.ohem_min_negatives = 0
    for name in ("mixed_precision", "classes"):
        if not hasattr(args, name):
            setattr(args, name, None)
    return args


def rpn_patched(args: argparse.Namespace) -> bool:
    """Whether the run patches the RPN: ``--ohem``, or ``--rpn-loss focal`` (which needs the patch).

    Args:
        args: parsed options (``ohem``, ``rpn_loss``; missing ones count as off).
    """
    return bool(getattr(args, "ohem", False)) or getattr(args, "rpn_loss", "ohem") == "focal"


def uses_patch(args: argparse.Namespace) -> bool:
    """Whether the run applies ``mrcnn_ohem.patch`` at all (RPN and/or RoI head).

    Args:
        args: parsed options (``ohem``, ``rpn_loss``, ``ohem_roi``; missing ones count as off).
    """
    return rpn_patched(args) or bool(getattr(args, "ohem_roi", False))


def run_name(args: argparse.Namespace) -> str:
    """The config NAME: ``--name``, or ``<prefix>_`` + ``ohem`` / ``focal`` / ``baseline`` for the
    RPN, with ``_roi`` appended for RoI OHEM (``<prefix>_roi`` when only the RoI head mines).

    Args:
        args: parsed options (``name``, ``prefix`` and the OHEM switches).
    """
    if args.name:
        return args.name
    rpn = ("focal" if getattr(args, "rpn_loss", "ohem") == "focal" else "ohem") if rpn_patched(args) else None
    if getattr(args, "ohem_roi", False):
        return f"{args.prefix}_{rpn}_roi" if rpn else f"{args.prefix}_roi"
    return f"{args.prefix}_{rpn or 'baseline'}"


def find_last_run(logs: str | Path, prefix: str) -> str:
    """Last checkpoint of the newest run of ``prefix``, trained with or without OHEM.

    Looks in the ``<logs>/<prefix>_*`` run folders (Matterport's layout, ``<name>YYYYmmddTHHMM``:
    ``_ohem``, ``_baseline``, ``_focal``, ``_roi`` ...) and takes the run whose newest checkpoint
    was written last.

    Args:
        logs: the folder holding the run folders (``--logs``).
        prefix: the run name prefix (``--prefix``, e.g. ``"coco"``).

    Raises:
        FileNotFoundError: no run of ``prefix`` with a checkpoint under ``logs``.
    """
    logs = Path(logs)
    runs = [d for d in logs.glob(f"{prefix}_*") if d.is_dir() and re.fullmatch(r"[\w-]+\d{8}T\d{4}", d.name)]
    latest = [max(checkpoints, key=lambda p: (p.stat().st_mtime, p.name))
              for run in runs if (checkpoints := sorted(run.glob("mask_rcnn_*.h5")))]
    if not latest:
        raise FileNotFoundError(f"--model last: no run of {prefix!r} ({prefix}_ohem*, {prefix}_baseline*, ...) "
                                f"with a checkpoint under {logs}; train one first, or pass --model PATH")
    return str(max(latest, key=lambda p: (p.stat().st_mtime, p.name)))


def read_run(weights: str | None) -> dict[str, Any] | None:
    """What training wrote next to ``weights``: ``run.json`` (or, for runs older than it, the
    ``ohem`` flag of ``history.json``); None for a file outside a run folder.

    Args:
        weights: a checkpoint path; None or empty gives None.

    Returns:
        The run's dict with ``"path"`` (the file it came from) added, or None.
    """
    if not weights:
        return None
    folder = Path(weights).parent
    if (folder / "run.json").is_file():
        run = json.loads((folder / "run.json").read_text())
        run["path"] = str(folder / "run.json")
        return run
    if (folder / "history.json").is_file():
        history = json.loads((folder / "history.json").read_text())
        return {"name": history.get("name"), "ohem": history.get("ohem"), "ohem_settings": None,
                "path": str(folder / "history.json")}
    return None


# --- the steps of resolve() ------------------------------------------------------------------------

def _check_numbers(args: argparse.Namespace) -> None:
    checks = [("image_size", "--image-size", lambda v: v >= 64 and v % 64 == 0, "a multiple of 64, at least 64"),
              ("anchor_base", "--anchor-base", lambda v: v >= 1, "an integer >= 1"),
              ("mask_head_filters", "--mask-head-filters", lambda v: v >= 1, "an integer >= 1"),
              ("limit", "--limit", lambda v: v >= 1, "an integer >= 1"),
              ("epochs", "--epochs", lambda v: v >= 1, "an integer >= 1"),
              ("steps_per_epoch", "--steps-per-epoch", lambda v: v >= 1, "an integer >= 1"),
              ("batch_size", "--batch-size", lambda v: v >= 1, "an integer >= 1"),
              ("train_rois", "--train-rois", lambda v: v >= 1, "an integer >= 1"),
              ("learning_rate", "--learning-rate", lambda v: v > 0, "a number > 0"),
              ("empty_images", "--empty-images", lambda v: v >= 0, "an integer >= 0"),
              ("detection_min_confidence", "--detection-min-confidence", lambda v: 0 <= v <= 1,
               "a number in [0, 1]")]
    for name, flag, ok, expected in checks:
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise ValueError(f"{flag} must be {expected}; received {value}")


def _imply_switches(args: argparse.Namespace) -> None:
    """Every OHEM option implies its switch; with the switch explicitly off, it is refused."""
    focal = getattr(args, "rpn_loss", "ohem") == "focal"
    for switch, knobs in (("ohem", RPN_KNOBS), ("ohem_roi", ROI_KNOBS)):
        given = [flag for dest, flag in knobs.items() if getattr(args, dest, None) is not None]
        if switch == "ohem" and focal:
            given.append("--rpn-loss focal")
        flag = "--" + switch.replace("_", "-")
        if given and getattr(args, switch) is False:
            raise ValueError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} {flag}; received "
                             f"--no-{flag[2:]}. Drop --no-{flag[2:]} (OHEM options imply {flag}) or drop "
                             f"{', '.join(given)}.")
        if given and getattr(args, switch) is None and not (switch == "ohem" and given == ["--rpn-loss focal"]):
            setattr(args, switch, True)
            logger.info("%s on: implied by %s", flag, ", ".join(given))


def _check_ohem_values(args: argparse.Namespace) -> None:
    """Validate the OHEM values as ``OHEMConfigMixin`` will, naming the flag."""
    from mrcnn_ohem.config import validate_ohem_config

    values = SimpleNamespace(
        OHEM_RPN=bool(args.ohem), OHEM_RPN_TOP_K=args.ohem_top_k, OHEM_RPN_PER_IMAGE=not args.ohem_pooled,
        OHEM_RPN_POSITIVE_FRACTION=args.ohem_positive_fraction, OHEM_RPN_NEGATIVE_POOL=args.ohem_negative_pool,
        OHEM_RPN_NMS_THRESHOLD=args.ohem_nms, OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE=args.ohem_max_neg_per_pos,
        OHEM_RPN_MIN_NEGATIVES=args.ohem_min_negatives or 0, OHEM_RPN_LOSS=args.rpn_loss,
        OHEM_ROI=bool(args.ohem_roi), OHEM_ROI_TOP_K=args.ohem_roi_top_k, RPN_TRAIN_ANCHORS_PER_IMAGE=256,
        OHEM_ROI_RANKING=getattr(args, "ohem_roi_ranking", None) or "class",
        OHEM_ROI_NMS_THRESHOLD=getattr(args, "ohem_roi_nms", None),
        TRAIN_ROIS_PER_IMAGE=args.train_rois or (CPU_SETTINGS["TRAIN_ROIS_PER_IMAGE"] if args.backbone in CPU_BACKBONES
                                                 else 200), ROI_POSITIVE_RATIO=0.33,
        **({"OHEM_ROI_POOL": args.ohem_roi_pool} if args.ohem_roi_pool is not None else {}))
    flags = {"OHEM_RPN_TOP_K": "--ohem-top-k", "OHEM_RPN_POSITIVE_FRACTION": "--ohem-positive-fraction",
             "OHEM_RPN_NEGATIVE_POOL": "--ohem-negative-pool", "OHEM_RPN_NMS_THRESHOLD": "--ohem-nms",
             "OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE": "--ohem-max-neg-per-pos",
             "OHEM_RPN_MIN_NEGATIVES": "--ohem-min-negatives", "OHEM_ROI_POOL": "--ohem-roi-pool",
             "OHEM_ROI_TOP_K": "--ohem-roi-top-k", "OHEM_ROI_NMS_THRESHOLD": "--ohem-roi-nms"}
    try:
        validate_ohem_config(values)
    except ValueError as err:
        attribute = str(err).split(" ", 1)[0]
        raise ValueError(f"{flags[attribute]}: {err}" if attribute in flags else str(err)) from err


def _check_paths(args: argparse.Namespace) -> None:
    if args.command in ("train", "evaluate"):
        root = Path(args.dataset)
        subset = args.subset or ("train" if args.command == "train" else "val")
        annotations = root / "annotations" / f"instances_{subset}{args.year}.json"
        if not root.is_dir():
            raise FileNotFoundError(f"--dataset: {root} is not a folder (expected a COCO-format root with "
                                    "annotations/instances_<subset><year>.json and <subset><year>/)")
        if not annotations.is_file():
            raise FileNotFoundError(f"--dataset: {annotations} does not exist (expected "
                                    "annotations/instances_<subset><year>.json under the root)")
    model = (args.model or "").lower()
    if model not in ("", "none", "last", "imagenet") and not Path(args.model).is_file():
        raise FileNotFoundError(f"--model: weight file {args.model} does not exist (use 'last', 'none'"
                                f"{', imagenet' if args.command == 'train' else ''} or a .h5 path)")
    if getattr(args, "imagenet_weights", None) is not None and model != "imagenet":
        raise ValueError(f"--imagenet-weights needs --model imagenet; received --model {args.model}")
    if args.command == "predict":
        args.image_paths = _image_paths(args.images)


def _image_paths(values: list[str]) -> list[str]:
    paths = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"--images: folder {path} holds no {'/'.join(IMAGE_SUFFIXES)} file")
            paths += [str(p) for p in found]
        elif path.is_file():
            paths.append(str(path))
        else:
            raise FileNotFoundError(f"--images: {path} is neither an image file nor a folder")
    return paths


def _weights_path(args: argparse.Namespace) -> str | None:
    model = (args.model or "none").lower()
    if model == "none":
        return None
    if model == "imagenet":
        from mrcnn_ohem.maskrcnn.checkpoints import imagenet_weights_path

        return imagenet_weights_path(args.imagenet_weights)
    if model != "last":
        return args.model
    if args.command == "train":
        return find_last(str(args.logs), run_name(args).lower())
    if args.name:
        return find_last(str(args.logs), args.name.lower())
    return find_last_run(args.logs, args.prefix)


def _recorded_options(run: dict[str, Any]) -> dict[str, Any]:
    """The run's model options (older run.json files kept a few at the top level)."""
    options = dict(run.get("run_options") or {})
    for name in ("image_size", "backbone", "mask_head_filters"):
        if name not in options and run.get(name) is not None:
            options[name] = run[name]
    return options


def _take_run_options(args: argparse.Namespace, run: dict[str, Any]) -> None:
    """Fill the model options and classes from the run; refuse flags that contradict it."""
    where = run["path"]
    for name, value in _recorded_options(run).items():
        if name not in RUN_OPTIONS or value is None and getattr(args, name, None) is None:
            continue
        given = getattr(args, name, None)
        if given is not None and given != value:
            flag = RUN_OPTIONS[name]
            shown = (flag if given else f"--no-{flag[2:]}") if isinstance(given, bool) else f"{flag} {given}"
            raise ValueError(f"{shown} contradicts the run's {name.replace('_', ' ')} {value!r} ({where}). Drop "
                             f"{flag} to use the run's value, or pass --model for another run.")
        setattr(args, name, value)
    recorded = [name for name in (run.get("classes") or [])[1:]]  # after BG
    ids = [str(i) for i in (run.get("class_ids") or [])]
    if recorded and args.classes:
        tokens = sorted(t.strip() for value in args.classes for t in str(value).split(",") if t.strip())
        if tokens not in (sorted(recorded), sorted(ids)):
            raise ValueError(f"--classes {' '.join(args.classes)} contradicts the run's classes "
                             f"{', '.join(recorded)} ({where}). Drop --classes to use the run's.")
    if recorded and not args.classes:
        args.classes = ids or recorded

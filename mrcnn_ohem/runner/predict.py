"""``predict``: a trained model's detections on the user's own images, drawn and as COCO results.

Matterport's demo notebook and mmdetection's ``image_demo`` as one command::

    mrcnn-ohem-coco predict --model last --images photos/ street.jpg --out predictions/

For each image it writes ``<out>/<stem>.png``: the image with every detection's mask tinted,
its box, and its class name and score. All detections go to ``<out>/detections.json`` in COCO
results format (``image_id``, ``category_id``, ``bbox`` as ``[x, y, width, height]``, ``score``,
``segmentation`` as compressed RLE), plus each image's ``file_name``; the image id is the file's
stem when it is a number (COCO's file names), else its 1-based position on the command line.

The model options and classes come from the run that wrote the weights (``run.json``, see
:mod:`.runconfig`). Weights from outside a run folder (e.g. Matterport's ``mask_rcnn_coco.h5``)
need ``--dataset`` (and optionally ``--classes``) to name the classes.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn_ohem.runner import runconfig

logger = logging.getLogger(__name__)

__all__ = ["predict", "draw_detections", "class_table"]


def class_table(args: argparse.Namespace) -> Any:
    """A prepared ``Dataset`` that holds only the model's classes (COCO source, ids and names).

    From the run's ``run.json``; for weights outside a run, from the categories of
    ``--dataset``'s annotation file (all of them, or ``--classes``), in ascending COCO id order
    as :class:`~mrcnn_ohem.datasets.coco.CocoDataset` numbers them.

    Args:
        args: the ``predict`` options after :func:`~.runconfig.resolve` (``run``, ``model``,
            ``dataset``, ``year``, ``classes``).

    Raises:
        ValueError: no run and no ``--dataset``, or a class of ``--classes`` the file lacks.
        FileNotFoundError: ``--dataset`` has no annotation file.
    """
    from mrcnn_ohem.datasets.coco import SOURCE
    from mrcnn_ohem.maskrcnn.dataset import Dataset

    run = args.run or {}
    if run.get("class_ids"):
        pairs = list(zip(run["class_ids"], run["classes"][1:]))
    elif args.dataset:
        pairs = _dataset_classes(args)
    else:
        raise ValueError(f"--model {args.model} is outside a run folder (no run.json beside it), so its classes "
                         "are unknown: pass --dataset (the COCO-format root that names them) and, for a subset, "
                         "--classes")
    table = Dataset()
    for category_id, name in sorted(pairs):
        table.add_class(SOURCE, int(category_id), name)
    table.prepare()
    return table


def _dataset_classes(args: argparse.Namespace) -> list[tuple[int, str]]:
    folder = Path(args.dataset) / "annotations"
    files = sorted(folder.glob(f"instances_*{args.year}.json"))
    if not files:
        raise FileNotFoundError(f"--dataset: no annotations/instances_<subset>{args.year}.json under {args.dataset}")
    categories = {int(c["id"]): c["name"] for c in json.loads(files[0].read_text())["categories"]}
    if not args.classes:
        return sorted(categories.items())
    wanted = [t.strip() for value in args.classes for t in str(value).split(",") if t.strip()]
    by_name = {name: cid for cid, name in categories.items()}
    pairs = []
    for token in wanted:
        cid = int(token) if token.isdigit() else by_name.get(token)
        if cid not in categories:
            raise ValueError(f"--classes: {token!r} is not a category of {files[0]}; received {wanted}")
        pairs.append((cid, categories[cid]))
    return sorted(set(pairs))


def predict(args: argparse.Namespace) -> dict[str, Any]:
    """Detect on ``--images`` with ``--model``; write the drawings and ``detections.json`` to ``--out``.

    Args:
        args: the parsed ``predict`` options (:func:`~mrcnn_ohem.runner.cli.build_parser`);
            resolved in place first (:func:`~.runconfig.resolve`).

    Returns:
        ``{"images": n, "detections": n, "out": folder, "results": path of detections.json}``.

    Raises:
        ValueError / FileNotFoundError: see :func:`~.runconfig.resolve` and :func:`class_table`.
    """
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.coco import read_image
    from mrcnn_ohem.datasets.coco_eval import build_coco_results
    from mrcnn_ohem.maskrcnn import model as modellib
    from mrcnn_ohem.runner.train_eval import build_model, make_config

    runconfig.resolve(args)
    import_tf_keras().utils.set_random_seed(int(args.seed))
    classes = class_table(args)
    config = make_config(args, classes.num_classes, "inference")
    model, weights = build_model(modellib, "inference", config, args, dataset=classes)
    if not weights:
        logger.warning("Predicting with a randomly initialised model (--model none).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for position, path in enumerate(args.image_paths, 1):
        image = read_image(path)
        detections = model.detect([image])[0]
        stem = Path(path).stem
        image_id = int(stem) if stem.isdigit() else position
        names = [classes.class_names[i] for i in detections["class_ids"]]
        drawn = draw_detections(image, detections["rois"], detections["masks"], names, detections["scores"])
        _save_png(drawn, out / f"{stem}.png")
        records = build_coco_results(classes, image_id, detections["rois"], detections["class_ids"],
                                     detections["scores"], detections["masks"])
        results += [dict(record, file_name=Path(path).name) for record in records]
        logger.info("%s: %d detection(s)%s", path, len(names),
                    (": " + ", ".join(f"{n} {s:.2f}" for n, s in zip(names, detections["scores"]))) if names else "")
    target = out / "detections.json"
    target.write_text(json.dumps(results, indent=1))
    return {"images": len(args.image_paths), "detections": len(results), "out": str(out), "results": str(target)}


def draw_detections(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray, names: list[str],
                    scores: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with each detection's mask tinted, its box outlined and ``name score`` written above it.

    Args:
        image: [height, width, 3] uint8 RGB.
        boxes: [detections, (y1, x1, y2, x2)] in pixels.
        masks: [height, width, detections] bool.
        names: class name of each detection.
        scores: [detections] confidences.
        alpha: opacity of the mask tint.

    Returns:
        [height, width, 3] uint8 RGB, a new array.
    """
    from PIL import Image, ImageDraw

    canvas = image.astype(np.float32)
    colors = [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(1, len(names)), 0.9, 1.0))
              for i in range(len(names))]
    for i, color in enumerate(colors):
        mask = masks[..., i].astype(bool)
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * np.asarray(color, dtype=np.float32)
    picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for (y1, x1, y2, x2), name, score, color in zip(np.asarray(boxes), names, np.asarray(scores), colors):
        draw.rectangle([int(x1), int(y1), int(x2) - 1, int(y2) - 1], outline=color, width=2)
        label = f"{name} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((int(x1), int(y1)), label)
        y = int(y1) - (bottom - top) - 2 if int(y1) >= bottom - top + 2 else int(y1) + 2
        draw.rectangle([int(x1), y, int(x1) + right - left + 2, y + bottom - top + 2], fill=color)
        draw.text((int(x1) + 1, y - (top - int(y1)) + 1), label, fill=(0, 0, 0))
    return np.asarray(picture)


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)

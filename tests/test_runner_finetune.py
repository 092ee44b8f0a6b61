"""Fine-tuning from a Matterport COCO file through the command line (runner/train_eval.py).

Fast tests: the class-head plan (81-row mapping, other mismatches, ``--exclude``) and
``find_last_run``. The slow test runs the ``mrcnn-ohem-coco`` entry point: fine-tune an
81-class file on ``../shared/data/coco_mini`` with ``--classes``. Evaluating a run's checkpoint
with the default ``--model last`` and no ``--ohem`` (the run's OHEM settings logged and recorded)
is checked on the training run of ``tests/test_samples.py``, and evaluation on the real COCO
images by the README flow. (``tests/test_readme.py`` runs the installed console script in
subprocesses, as a user would, and checks that nothing but progress and results reaches the
terminal.)
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from mrcnn_ohem.runner import cli, train_eval

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco_mini"
TINY = ["--image-size", "64", "--backbone", "tiny", "--anchor-base", "8", "--no-progress"]


def _write_heads(path: Path, rows: int) -> None:
    """A weight file holding only the three class heads, with ``rows`` classes."""
    shapes = {"mrcnn_class_logits": [(8, rows), (rows,)], "mrcnn_bbox_fc": [(8, 4 * rows), (4 * rows,)],
              "mrcnn_mask": [(1, 1, 8, rows), (rows,)]}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in shapes]
        for name, weight_shapes in shapes.items():
            group = f.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, shape in zip(names, weight_shapes):
                group[n] = np.zeros(shape, np.float32)


class _Classes:
    def __init__(self, *classes):
        self.class_info = [{"source": "", "id": 0, "name": "BG"}] + [
            {"source": source, "id": i, "name": name} for source, i, name in classes]


def test_81_row_file_maps_coco_categories_and_logs_it(tmp_path, caplog):
    path = tmp_path / "coco81.h5"
    _write_heads(path, 81)
    dataset = _Classes(("coco", 1, "person"), ("coco", 3, "car"), ("coco", 18, "dog"), ("coco", 90, "toothbrush"))
    with caplog.at_level(logging.INFO):
        plan = train_eval.class_head_plan(str(path), dataset, None)
    assert plan == {"class_indices": [0, 1, 3, 17, 80]}
    assert "person -> row 1, car -> row 3, dog -> row 17, toothbrush -> row 80" in caplog.text


def test_other_mismatches_exclude_the_heads_with_a_warning(tmp_path, caplog):
    path = tmp_path / "heads5.h5"
    _write_heads(path, 5)
    dataset = _Classes(("coco", 1, "person"), ("coco", 18, "dog"))
    with caplog.at_level(logging.INFO):
        plan = train_eval.class_head_plan(str(path), dataset, None)
    assert plan == {"exclude": ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]}
    assert "class heads for 5 classes, the model 3" in caplog.text and "WARNING" in caplog.text
    # 81 rows but classes that are not COCO categories (e.g. the shapes data): no mapping.
    _write_heads(path, 81)
    shapes = _Classes(("shapes", 1, "square"), ("shapes", 2, "circle"))
    assert train_eval.class_head_plan(str(path), shapes, None) == plan
    # Same number of classes: loaded as it is. --exclude overrides everything.
    assert train_eval.class_head_plan(str(path), _Classes(*[("coco", i, str(i)) for i in range(1, 81)]), None) == {}
    assert train_eval.class_head_plan(str(path), dataset, "heads") == plan
    assert train_eval.class_head_plan(str(path), dataset, "mrcnn_mask, fpn_p2") == {"exclude": ["mrcnn_mask", "fpn_p2"]}


def test_find_last_run_takes_the_newest_checkpoint_of_either_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--model last: no run of 'coco' \(coco_ohem\*, "
                                                r"coco_baseline\*, \.\.\.\) with a checkpoint "):
        train_eval.find_last_run(tmp_path, "coco")
    files = {}
    for i, name in enumerate(["coco_baseline20260101T1000/mask_rcnn_coco_baseline_0002.h5",
                              "coco_ohem20260101T1000/mask_rcnn_coco_ohem_0001.h5",
                              "shapes_ohem20270101T1000/mask_rcnn_shapes_ohem_0001.h5"]):
        path = tmp_path / name
        path.parent.mkdir()
        path.write_bytes(b"")
        os.utime(path, (1_000 + i, 1_000 + i))
        files[name.split("/")[0][:-13]] = path
    # Same minute in the folder names: the checkpoint written last decides; other prefixes never count.
    assert train_eval.find_last_run(tmp_path, "coco") == str(files["coco_ohem"])
    os.utime(files["coco_baseline"], (5_000, 5_000))
    assert train_eval.find_last_run(tmp_path, "coco") == str(files["coco_baseline"])


@pytest.mark.slow
@pytest.mark.skipif(not COCO_MINI.is_dir(), reason="../shared/data/coco_mini is not there")
def test_finetune_coco81_file_maps_the_class_rows(tmp_path, caplog, capsys):
    from mrcnn_ohem.maskrcnn import model as modellib
    from mrcnn_ohem.maskrcnn.weights import CLASS_HEADS
    from mrcnn_ohem.runner.commands import coco_main

    logs = tmp_path / "logs"
    common = ["--dataset", str(COCO_MINI), "--classes", "person", "dog", "--limit", "2", "--logs", str(logs), *TINY]
    args = cli.build_parser("coco.py", "", prefix="coco").parse_args(["train", *common])
    coco81 = modellib.MaskRCNN("inference", train_eval.make_config(args, 81, "inference"), str(tmp_path))
    rng = np.random.default_rng(0)
    for name in CLASS_HEADS:
        layer = coco81.keras_model.get_layer(name)
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    weights = tmp_path / "coco81.h5"
    coco81.keras_model.save_weights(str(weights))
    del coco81

    caplog.set_level(logging.INFO)
    assert coco_main(["train", *common, "--model", str(weights), "--ohem", "--layers", "heads",
                      "--epochs", "1", "--steps-per-epoch", "1"]) == 0
    assert "person -> row 1, dog -> row 17" in caplog.text
    (run,) = logs.glob("coco_ohem*")
    with h5py.File(next(run.glob("mask_rcnn_coco_ohem_0001.h5")), "r") as f:
        assert f["mrcnn_class_logits"][f["mrcnn_class_logits"].attrs["weight_names"][0]].shape[-1] == 3
    assert json.loads((run / "run.json").read_text())["ohem"] is True
    # stdout holds the run summary.
    assert capsys.readouterr().out.strip().startswith("coco_ohem: 1 steps")

"""End-to-end tests of samples/coco/coco.py, samples/shapes/shapes.py and samples/demo.py.

The scripts are imported from their paths with importlib (they are not a package and are never
put on sys.path). Model-building tests are marked slow; the option-handling tests are fast.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import pytest

from mrcnn_ohem.datasets.shapes import write_coco_folder
from mrcnn_ohem.runner import runconfig, train_eval

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "64", "--backbone", "tiny", "--anchor-base", "8", "--no-progress"]


def _load_script(relative: str):
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"sample_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def coco_script():
    return _load_script("samples/coco/coco.py")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_coco")
    write_coco_folder(root, "train", 4, 64, 64, seed=0)
    write_coco_folder(root, "val", 3, 64, 64, seed=1)
    return root


def _finite_numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [v for value in tree.values() for v in _finite_numbers(value)]
    if isinstance(tree, list):
        return [v for value in tree for v in _finite_numbers(value)]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [float(tree)]
    return []


# ---- fast: options, config, bad input --------------------------------------------------------


def test_classes_accept_names_ids_and_commas():
    assert train_eval.class_tokens(["dog,17", "cat"]) == ([17], ["dog", "cat"])
    assert train_eval.class_tokens(None) == (None, None)


def test_config_follows_the_options(coco_script):
    parser = coco_script.build_parser()
    args = parser.parse_args(["train", "--dataset", "x", "--ohem", "--ohem-top-k", "64",
                              "--ohem-positive-fraction", "0.25", "--ohem-negative-pool", "500",
                              "--ohem-pooled", *TINY, "--batch-size", "2", "--steps-per-epoch", "7"])
    config = train_eval.make_config(args, num_classes=4, mode="training")
    assert config.NAME == "coco_ohem" and config.NUM_CLASSES == 4
    assert (config.OHEM_RPN, config.OHEM_RPN_TOP_K, config.OHEM_RPN_PER_IMAGE) == (True, 64, False)
    assert (config.OHEM_RPN_POSITIVE_FRACTION, config.OHEM_RPN_NEGATIVE_POOL) == (0.25, 500)
    assert tuple(config.IMAGE_SHAPE) == (64, 64, 3) and config.BATCH_SIZE == 2
    assert tuple(config.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128) and config.STEPS_PER_EPOCH == 7
    # A tiny backbone trains from scratch: BatchNorm normalizes with each batch's own statistics,
    # also at inference (the moving averages of 2-image batches scored far lower).
    assert config.TRAIN_BN is True
    inference = train_eval.make_config(parser.parse_args(["evaluate", "--dataset", "x", *TINY]), 4, "inference")
    assert inference.TRAIN_BN is True
    baseline = train_eval.make_config(parser.parse_args(["evaluate", "--dataset", "x"]), 81, "inference")
    assert baseline.NAME == "coco_baseline" and not hasattr(baseline, "OHEM_RPN")
    assert baseline.BATCH_SIZE == 1 and baseline.DETECTION_MIN_CONFIDENCE == 0.0
    assert tuple(baseline.RPN_ANCHOR_SCALES) == (16, 32, 64, 128, 256)  # 512 px: Matterport's / 2
    assert baseline.TRAIN_BN is False and baseline.BACKBONE == "resnet50"
    compact = train_eval.make_config(parser.parse_args(
        ["train", "--dataset", "x", "--backbone", "compact", "--image-size", "128", "--no-train-bn"]), 4, "training")
    assert compact.BACKBONE == "compact" and compact.TRAIN_BN is False
    assert compact.MASK_HEAD_FILTERS == 64 and baseline.MASK_HEAD_FILTERS == 256  # upstream width for ResNets
    assert (compact.MASK_POOL_SIZE, list(compact.MASK_SHAPE)) == (14, [28, 28])


def test_bad_input_exits_with_a_message(coco_script, tiny_folder, tmp_path, caplog):
    code = coco_script.main(["train", "--dataset", str(tmp_path / "missing"), "--logs", str(tmp_path), *TINY])
    assert code == 2
    assert "is not a folder" in caplog.text and "annotations/instances_<subset><year>.json" in caplog.text
    caplog.clear()
    code = coco_script.main(["evaluate", "--dataset", str(tiny_folder), "--classes", "hexagon", "--model", "none",
                             "--logs", str(tmp_path), *TINY])
    assert code == 2
    assert "unknown class name 'hexagon'" in caplog.text and "Valid names: square, circle, triangle" in caplog.text
    with pytest.raises(SystemExit):
        coco_script.main(["train", "--dataset", str(tiny_folder), "--backbone", "vgg"])


def _damage(root: Path, subset: str) -> Path:
    """Add two records that killed runs (issue 27): a 2-point polygon, and an image whose JSON
    size disagrees with its file. Returns the second image's file."""
    path = root / "annotations" / f"instances_{subset}2017.json"
    document = json.loads(path.read_text())
    document["annotations"].append({"id": 10_001, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 0,
                                    "segmentation": [[10, 10, 20, 20]], "bbox": [10, 10, 10, 10]})
    document["images"][1]["height"] += 8
    path.write_text(json.dumps(document))
    return root / f"{subset}2017" / document["images"][1]["file_name"]


def test_strict_stops_before_a_model_is_built(coco_script, tmp_path, caplog):
    root = tmp_path / "data"
    write_coco_folder(root, "train", 3, 64, 64, seed=0)
    wrong_size = _damage(root, "train")
    logs = tmp_path / "logs"
    code = coco_script.main(["train", "--dataset", str(root), "--logs", str(logs), "--strict", *TINY])
    assert code == 2
    assert "2 damaged record(s)" in caplog.text
    assert "annotation (COCO image id 1, annotation id 10001" in caplog.text and "polygon 0 has 2 points" in caplog.text
    assert f"image (COCO image id 2, file {wrong_size})" in caplog.text and "the JSON says 64x72" in caplog.text
    assert not logs.exists()  # stopped before the model (which creates the log folder) was built


# ---- slow: real training and evaluation ------------------------------------------------------


@pytest.mark.slow
def test_coco_sample_trains_two_ohem_steps_then_evaluates(coco_script, tiny_folder, tmp_path, caplog, capsys):
    import h5py

    import mrcnn_ohem.maskrcnn.model as modellib

    originals = (modellib.rpn_class_loss_graph, modellib.build_rpn_targets, modellib.DataGenerator)
    logs = tmp_path / "logs"
    common = ["--dataset", str(tiny_folder), "--logs", str(logs), *TINY]
    assert coco_script.main(["train", *common, "--ohem", "--epochs", "1", "--steps-per-epoch", "2"]) == 0
    assert capsys.readouterr().out.strip().startswith("coco_ohem: 2 steps")  # stdout: the run summary
    # The OHEM patch and the data generator were put back after training.
    assert (modellib.rpn_class_loss_graph, modellib.build_rpn_targets, modellib.DataGenerator) == originals
    (run,) = logs.glob("coco_ohem*")
    with h5py.File(run / "mask_rcnn_coco_ohem_0001.h5", "r") as weights:
        conv1 = weights["mrcnn_mask_conv1"]
        kernel_shapes = [conv1[name].shape for name in conv1.attrs["weight_names"]]
    assert kernel_shapes[0][-1] == 64  # the tiny backbone's narrow mask head
    history = json.loads((run / "history.json").read_text())
    assert history["ohem"] is True and history["steps"] == 2
    assert all(math.isfinite(step["loss"]) and step["rpn_class_loss"] >= 0 for step in history["history"])

    # evaluate and predict take the model options from the run (no size or backbone flags), and
    # metrics files are named by what was scored, so a smaller evaluation overwrites nothing. The
    # second evaluation loads the run by default (--model last) and gives the run's own options
    # again, which is allowed; without --ohem (evaluate has no such flag) it logs the run's OHEM.
    data = ["--dataset", str(tiny_folder), "--logs", str(logs), "--no-progress"]
    assert coco_script.main(["evaluate", *data, "--model", "last"]) == 0
    caplog.set_level(logging.INFO)
    capsys.readouterr()
    assert coco_script.main(["evaluate", *data, "--limit", "2", *TINY, "--classes", "square", "circle,triangle"]) == 0
    evaluating = next(r.getMessage() for r in caplog.records if f"Evaluating run {run.name} (OHEM " in r.getMessage())
    assert "OHEM_RPN=True" in evaluating
    printed = capsys.readouterr().out  # stdout: the metrics table and where it was written
    assert "bbox AP50" in printed and "metrics written to" in printed
    files = sorted(p.name for p in run.glob("metrics_val2017_*.json"))
    assert files == ["metrics_val2017_mask_rcnn_coco_ohem_0001_2img.json",
                     "metrics_val2017_mask_rcnn_coco_ohem_0001_3img.json"]
    metrics = json.loads((run / files[1]).read_text())
    assert metrics["num_images"] == metrics["images"] == 3
    assert metrics["weights"].endswith("mask_rcnn_coco_ohem_0001.h5")
    assert metrics["settings"]["image_size"] == 64 and metrics["settings"]["backbone"] == "tiny"
    assert metrics["settings"]["classes"] == ["square", "circle", "triangle"] and metrics["ohem"] is True
    for kind, names in (("bbox", ("AP", "AP50", "AP75")), ("segm", ("AP", "AP50", "AP75")), ("rpn", ("AR@100",))):
        for name in names:
            assert math.isfinite(metrics[kind][name]) and -1.0 <= metrics[kind][name] <= 1.0
    assert all(math.isfinite(v) for v in _finite_numbers(metrics))
    smaller = json.loads((run / files[0]).read_text())
    assert smaller["name"] == "coco_ohem" and smaller["ohem"] is True and smaller["num_images"] == 2
    assert smaller["ohem_settings"]["OHEM_RPN_PER_IMAGE"] is True

    out = tmp_path / "predictions"
    images = sorted((tiny_folder / "val2017").iterdir())
    assert coco_script.main(["predict", "--model", "last", "--logs", str(logs), "--images", str(images[0]),
                             str(tiny_folder / "val2017"), "--out", str(out), "--detection-min-confidence", "0"]) == 0
    drawn = sorted(p.name for p in out.glob("*.png"))
    assert drawn == sorted(p.stem + ".png" for p in images)
    detections = json.loads((out / "detections.json").read_text())
    assert detections, "a random-ish model still returns its top detections at confidence 0"
    assert {d["category_id"] for d in detections} <= {1, 2, 3}
    for record in detections:
        assert set(record) == {"image_id", "category_id", "bbox", "score", "segmentation", "file_name"}
        assert record["image_id"] == int(Path(record["file_name"]).stem) and len(record["bbox"]) == 4
    # A flag that contradicts the run is refused, naming both values, before a model is built.
    assert coco_script.main(["evaluate", *data, "--model", "last", "--image-size", "128"]) == 2


@pytest.mark.slow
def test_interrupt_keeps_a_checkpoint_and_model_last_resumes_past_damaged_records(coco_script, tmp_path, monkeypatch,
                                                                                   capsys):
    """Two baseline runs on the tiny training set with two damaged records added (issue 27): an
    interrupted one, then its resumption. The damaged-records checks ride on these runs instead of
    a third training of their own; the records are skipped when loaded, so every run meets them."""
    root = tmp_path / "data"
    write_coco_folder(root, "train", 4, 64, 64, seed=0)  # tiny_folder's training images
    _damage(root, "train")
    logs = tmp_path / "logs"
    common = ["--dataset", str(root), "--logs", str(logs), *TINY, "--no-ohem"]
    class InterruptingRecorder(train_eval.StepRecorder):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if batch == 1:  # the second step of the first epoch
                raise KeyboardInterrupt

    monkeypatch.setattr(train_eval, "StepRecorder", InterruptingRecorder)
    assert coco_script.main(["train", *common, "--epochs", "2", "--steps-per-epoch", "3"]) == 130
    (run,) = logs.glob("coco_baseline*")
    assert [p.name for p in run.glob("*.h5")] == ["mask_rcnn_coco_baseline_0001.h5"]
    monkeypatch.undo()
    capsys.readouterr()
    # The resumed epoch's 3 steps visit each of the 3 readable images (image 1 without its 2-point
    # polygon): before issue 27, image 1 failed in pycocotools (TypeError) and image 2 in
    # load_image_gt (ValueError), ending the run.
    assert coco_script.main(["train", *common, "--model", "last", "--epochs", "2", "--steps-per-epoch", "3"]) == 0
    assert sorted(p.name for p in run.glob("*.h5")) == ["mask_rcnn_coco_baseline_0001.h5",
                                                         "mask_rcnn_coco_baseline_0002.h5"]
    history = json.loads((run / "history.json").read_text())
    # 2 steps of epoch 0 before the interrupt, then the 3 steps of epoch 1.
    assert history["steps"] == 3 and [step["epoch"] for step in history["history"]] == [0, 0, 1, 1, 1]

    # The damaged records were skipped and counted: the run summary's last line, run.json, history.json.
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(
        "damaged records skipped: 1 image(s), 1 annotation(s)")
    skipped = json.loads((run / "run.json").read_text())["skipped"]
    assert skipped["counts"] == {"image": 1, "annotation": 1, "polygon": 0}
    assert [(r["kind"], r["image_id"], r["annotation_id"]) for r in skipped["records"]] == [
        ("annotation", 1, 10_001), ("image", 2, None)]
    assert history["skipped"] == skipped["counts"]


@pytest.mark.slow
def test_shapes_sample_generates_its_data(tmp_path):
    shapes_script = _load_script("samples/shapes/shapes.py")
    data = tmp_path / "shapes"
    argv = ["evaluate", "--dataset", str(data), "--logs", str(tmp_path / "logs"), "--model", "none",
            "--train-images", "3", "--val-images", "2", *TINY]
    assert shapes_script.main(argv) == 0
    assert (data / "annotations" / "instances_train2017.json").is_file()
    (metrics_file,) = (tmp_path / "logs").glob("metrics_val2017_random_init_2img.json")
    assert json.loads(metrics_file.read_text())["num_images"] == 2


def test_demo_defaults_are_the_finetuning_budget_cut_to_fit_10_minutes():
    from benchmarks.quality.finetune import FINETUNE

    demo = _load_script("samples/demo.py")
    args = demo.build_parser().parse_args([])
    assert args.seeds == 3
    assert demo.demo_budget(args) == replace(FINETUNE, steps=100, val_images=100, probes=0)
    longer = demo.build_parser().parse_args(["--steps", "200", "--val-images", "300"])
    assert demo.demo_budget(longer) == replace(FINETUNE, probes=0)


def test_demo_refuses_without_a_checkpoint_for_this_code_and_names_the_command(tmp_path, monkeypatch, capsys):
    from benchmarks.quality import pretrain

    demo = _load_script("samples/demo.py")
    monkeypatch.setattr(pretrain, "find_checkpoint", lambda key=None: None)
    monkeypatch.setattr(pretrain, "find_earlier_checkpoint", lambda inputs=None: None)
    assert demo.main(["--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"key {pretrain.checkpoint_key()}" in err and "-m benchmarks.quality.pretrain" in err
    assert not (tmp_path / "val").exists()  # stopped before any work


@pytest.mark.slow
def test_demo_smoke_prints_the_table_and_saves_the_plot(tmp_path, capsys, caplog):
    demo = _load_script("samples/demo.py")
    caplog.set_level(logging.INFO)
    library = logging.getLogger("mrcnn_ohem")
    before = library.level
    assert demo.main(["--smoke", "--output", str(tmp_path)]) == 0
    # The library's INFO lines (a "Re-starting from epoch 1" per checkpoint load) stay out of
    # the demo's output, and its logger's level is back afterwards.
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("mrcnn_ohem")
                and r.levelno < logging.WARNING]
    assert any(r.name == "demo" for r in caplog.records) and library.level == before
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()  # on for the demo's runs only (op_determinism())
    out = capsys.readouterr().out
    assert "bbox AP50" in out and "95% t-interval over 2 paired seeds" in out and "OHEM won" in out
    assert "detect" in out and "at 80% power" in out
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in results["runs"]) == [
        ("baseline", 0), ("baseline", 1), ("ohem", 0), ("ohem", 1)]
    assert all(math.isfinite(r["metrics"]["seconds_per_step"]) for r in results["runs"])


def test_shapes_sample_defaults_are_cpu_sized():
    shapes_script = _load_script("samples/shapes/shapes.py")
    args = runconfig.fill_defaults(shapes_script.build_parser().parse_args(["train"]))
    assert (args.dataset, args.image_size, args.backbone, args.learning_rate) == ("data/shapes", 128, "compact", 0.02)
    config = train_eval.make_config(args, num_classes=4, mode="training")
    assert config.NAME == "shapes_baseline" and tuple(config.RPN_ANCHOR_SCALES) == (32, 64, 128, 256, 512)
    assert config.TRAIN_BN is True


def test_an_earlier_checkpoint_of_the_same_settings_is_found_and_another_setting_is_not(tmp_path, monkeypatch):
    """The demo may start from weights that earlier model code trained with the same settings,
    seeds and TensorFlow (it says so); a change of any setting makes them another checkpoint."""
    from benchmarks.quality import pretrain

    inputs = json.loads(json.dumps(pretrain.key_inputs(), default=str))
    monkeypatch.setattr(pretrain, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setattr(pretrain, "CACHE_DIR", tmp_path / "cache")
    (tmp_path / "shipped").mkdir()
    assert pretrain.find_earlier_checkpoint(inputs) is None

    def ship(key, **changes):
        record = json.loads(json.dumps(inputs))
        record["code"] = {name: "other" for name in record["code"]}
        record["versions"]["mrcnn_ohem"] = "0.1.0"
        record["config"].pop("MIXED_PRECISION", None)  # a setting added later, at its default
        for section, values in changes.items():
            record[section].update(values)
        (tmp_path / "shipped" / f"shapes_{key}.json").write_text(json.dumps({"key": key, "inputs": record}))
        (tmp_path / "shipped" / f"shapes_{key}.h5").write_bytes(b"")

    ship("aaaaaaaaaaaa", config={"LEARNING_RATE": 0.5})
    assert pretrain.find_earlier_checkpoint(inputs) is None
    ship("bbbbbbbbbbbb")
    path, key = pretrain.find_earlier_checkpoint(inputs)
    assert (path.name, key) == ("shapes_bbbbbbbbbbbb.h5", "bbbbbbbbbbbb")


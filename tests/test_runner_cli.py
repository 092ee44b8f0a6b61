"""The command line's own rules (mrcnn_ohem.runner.cli and .runconfig), without training.

One run config follows a run (train records, evaluate and predict read and refuse
contradictions), OHEM options imply their switch, random starts train BatchNorm, and every
mistake is reported before TensorFlow is imported. The train -> evaluate -> predict flow itself
runs in tests/test_samples.py and, as the README shows it, in tests/test_readme.py.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mrcnn_ohem.datasets.shapes import write_coco_folder
from mrcnn_ohem.runner import commands, runconfig, train_eval


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco_folder(root, "train", 2, 64, 64, seed=0)
    write_coco_folder(root, "val", 2, 64, 64, seed=1)
    return root


def parse(*argv: str):
    return commands.build_coco_parser("coco").parse_args(list(argv))


def fake_run(logs: Path, name: str = "coco_ohem20260101T1000", **options) -> Path:
    """A run folder with one (empty) checkpoint and the run.json train writes."""
    run = logs / name
    run.mkdir(parents=True)
    checkpoint = run / f"mask_rcnn_{name[:-13]}_0001.h5"
    checkpoint.write_bytes(b"")
    recorded = {"image_size": 64, "backbone": "tiny", "anchor_base": 8, "mask_head_filters": 64,
                "train_bn": True, "mixed_precision": None, **options}
    (run / "run.json").write_text(json.dumps({
        "name": name[:-13], "ohem": True, "classes": ["BG", "square", "circle", "triangle"],
        "class_ids": [1, 2, 3], "run_options": recorded}))
    return checkpoint


def test_each_subcommand_help_lists_its_own_options(capsys):
    helps = {}
    for command in ("train", "evaluate", "predict"):
        with pytest.raises(SystemExit) as exit_:
            parse(command, "--help")
        assert exit_.value.code == 0
        helps[command] = capsys.readouterr().out
    assert "--ohem-top-k" in helps["train"] and "--epochs" in helps["train"]
    assert "--ohem" not in helps["evaluate"] and "--epochs" not in helps["evaluate"]
    assert "--images" in helps["predict"] and "--out" in helps["predict"] and "--images" not in helps["evaluate"]
    assert "default: the run's" in helps["evaluate"] and "default: the run's" not in helps["train"]


@pytest.mark.parametrize("flags, switch, logged", [
    (["--ohem-top-k", "64"], "ohem", "--ohem on: implied by --ohem-top-k"),
    (["--ohem-nms", "0.7", "--ohem-pooled"], "ohem", "--ohem on: implied by --ohem-pooled, --ohem-nms"),
    (["--ohem-min-negatives", "8"], "ohem", "--ohem on: implied by --ohem-min-negatives"),
    (["--ohem-roi-pool", "256"], "ohem_roi", "--ohem-roi on: implied by --ohem-roi-pool"),
    (["--ohem-roi-ranking", "class+box", "--ohem-roi-nms", "0.7"], "ohem_roi",
     "--ohem-roi on: implied by --ohem-roi-ranking, --ohem-roi-nms"),
])
def test_ohem_options_imply_their_switch(folder, caplog, flags, switch, logged):
    with caplog.at_level(logging.INFO, logger="mrcnn_ohem"):
        args = runconfig.resolve(parse("train", "--dataset", str(folder), *flags))
    assert getattr(args, switch) is True and logged in caplog.text
    config = train_eval.make_config(args, 4, "training")
    assert getattr(config, "OHEM_RPN" if switch == "ohem" else "OHEM_ROI") is True
    assert config.NAME == ("coco_ohem" if switch == "ohem" else "coco_roi")


def test_without_any_ohem_option_the_run_is_the_baseline(folder):
    args = runconfig.resolve(parse("train", "--dataset", str(folder)))
    assert (args.ohem, args.ohem_roi) == (False, False)
    assert train_eval.make_config(args, 4, "training").NAME == "coco_baseline"


@pytest.mark.parametrize("flags, message", [
    (["--no-ohem", "--ohem-top-k", "64"], "--ohem-top-k needs --ohem; received --no-ohem. Drop --no-ohem"),
    (["--no-ohem", "--rpn-loss", "focal"], "--rpn-loss focal needs --ohem; received --no-ohem"),
    (["--no-ohem-roi", "--ohem-roi-top-k", "8", "--ohem-roi-pool", "64"],
     "--ohem-roi-pool, --ohem-roi-top-k need --ohem-roi; received --no-ohem-roi"),
    (["--ohem-top-k", "0"], "--ohem-top-k: OHEM_RPN_TOP_K must be None or an integer >= 1 .*; received 0"),
    (["--backbone", "tiny", "--ohem-roi-pool", "16"], r"--ohem-roi-pool: OHEM_ROI_POOL must be an integer >= 32 "
                                                      r"\(TRAIN_ROIS_PER_IMAGE\)"),
    (["--ohem-roi-nms", "1.5"], r"--ohem-roi-nms: OHEM_ROI_NMS_THRESHOLD must be None or a number in \(0, 1\]"),
    (["--image-size", "100"], "--image-size must be a multiple of 64, at least 64; received 100"),
    (["--model", "imagenet", "--backbone", "resnet50"], "ImageNet weights: .* does not exist, and this package "
                                                         "never downloads"),
    (["--imagenet-weights", "x.h5"], "--imagenet-weights needs --model imagenet; received --model None"),
    (["--model", "missing.h5"], "--model: weight file missing.h5 does not exist"),
    (["--model", "last"], "Could not find a model directory starting with 'coco_baseline'"),
])
def test_contradictions_and_bad_values_are_refused_with_the_flags_named(folder, tmp_path, monkeypatch, flags,
                                                                         message):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        runconfig.resolve(parse("train", "--dataset", str(folder), "--logs", str(tmp_path), *flags))


def test_evaluate_and_predict_take_the_run_s_options_and_refuse_contradictions(folder, tmp_path):
    checkpoint = fake_run(tmp_path)
    args = runconfig.resolve(parse("evaluate", "--dataset", str(folder), "--logs", str(tmp_path)))
    assert args.weights_path == str(checkpoint)
    assert (args.image_size, args.backbone, args.anchor_base, args.mask_head_filters, args.train_bn) == (
        64, "tiny", 8, 64, True)
    assert args.classes == ["1", "2", "3"]
    config = train_eval.make_config(args, 4, "inference")
    assert tuple(config.IMAGE_SHAPE) == (64, 64, 3) and config.BACKBONE == "tiny" and config.TRAIN_BN is True
    # The same values given again are fine; another value is refused, naming both.
    runconfig.resolve(parse("evaluate", "--dataset", str(folder), "--logs", str(tmp_path), "--image-size", "64",
                            "--classes", "square", "circle,triangle"))
    for flags, message in ((["--image-size", "512"], r"--image-size 512 contradicts the run's image size 64 \("),
                           (["--backbone", "resnet50"], "--backbone resnet50 contradicts the run's backbone 'tiny'"),
                           (["--no-train-bn"], "--no-train-bn contradicts the run's train bn True"),
                           (["--classes", "square"], "--classes square contradicts the run's classes square, "
                                                     "circle, triangle")):
        with pytest.raises(ValueError, match=message):
            runconfig.resolve(parse("evaluate", "--dataset", str(folder), "--logs", str(tmp_path), *flags))
    image = next((folder / "val2017").iterdir())
    args = runconfig.resolve(parse("predict", "--logs", str(tmp_path), "--images", str(folder / "val2017"),
                                   str(image), "--out", str(tmp_path / "out")))
    assert args.image_size == 64 and len(args.image_paths) == 3 and args.image_paths[-1] == str(image)
    with pytest.raises(FileNotFoundError, match="--images: .*nothing.png is neither an image file nor a folder"):
        runconfig.resolve(parse("predict", "--logs", str(tmp_path), "--images", str(tmp_path / "nothing.png"),
                                "--out", str(tmp_path / "out")))


def test_resuming_a_run_keeps_its_options_and_fine_tuning_from_a_file_may_change_them(folder, tmp_path):
    fake_run(tmp_path, "coco_ohem20260101T1000")
    with pytest.raises(ValueError, match="--image-size 128 contradicts the run's image size 64"):
        runconfig.resolve(parse("train", "--dataset", str(folder), "--logs", str(tmp_path), "--ohem",
                                "--model", "last", "--image-size", "128"))
    args = runconfig.resolve(parse("train", "--dataset", str(folder), "--logs", str(tmp_path), "--ohem",
                                   "--model", "last"))
    assert (args.image_size, args.backbone) == (64, "tiny")
    checkpoint = next(tmp_path.glob("coco_ohem*/*.h5"))
    args = runconfig.resolve(parse("train", "--dataset", str(folder), "--logs", str(tmp_path), "--model",
                                   str(checkpoint), "--image-size", "128"))
    assert args.image_size == 128 and args.run is None


def test_a_resnet_started_from_random_weights_trains_batchnorm(folder, caplog):
    with caplog.at_level(logging.INFO, logger="mrcnn_ohem"):
        args = runconfig.resolve(parse("train", "--dataset", str(folder)))
    assert args.backbone == "resnet50" and args.train_bn is True
    assert "Training resnet50 from random weights: BatchNorm trains (TRAIN_BN = True)" in caplog.text
    assert train_eval.make_config(args, 4, "training").TRAIN_BN is True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mrcnn_ohem"):
        frozen = runconfig.resolve(parse("train", "--dataset", str(folder), "--no-train-bn"))
    assert frozen.train_bn is False
    assert "with BatchNorm frozen (--no-train-bn)" in caplog.text and "Use --train-bn" in caplog.text


def test_a_mistake_fails_before_tensorflow_is_imported(folder, tmp_path):
    """Every check runs before TensorFlow loads; the closing note gives the time this takes."""
    code = ("import sys, time; start = time.perf_counter(); from mrcnn_ohem.runner.commands import coco_main\n"
            "for argv in (['train', '--dataset', sys.argv[1] + '/missing'], ['train', '--dataset', sys.argv[1],\n"
            "             '--no-ohem', '--ohem-top-k', '8'], ['evaluate', '--dataset', sys.argv[1], '--logs',\n"
            "             sys.argv[2]]):\n"
            "    assert coco_main(argv) == 2, argv\n"
            "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules, round(time.perf_counter() - start, 2))\n")
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded_tf, loaded_keras, _seconds = result.stdout.split()
    assert (loaded_tf, loaded_keras) == ("False", "False"), result.stdout
    assert "--dataset: " in result.stderr and "is not a folder" in result.stderr
    assert "--ohem-top-k needs --ohem" in result.stderr and "--model last: no run of 'coco'" in result.stderr


def test_mixed_precision_flag_reaches_the_config_and_the_run(folder, tmp_path):
    args = runconfig.resolve(parse("train", "--dataset", str(folder), "--mixed-precision", "bfloat16"))
    assert train_eval.make_config(args, 4, "training").MIXED_PRECISION == "mixed_bfloat16"
    fake_run(tmp_path, mixed_precision="float16")  # run.json keeps the flag's value
    evaluated = runconfig.resolve(parse("evaluate", "--dataset", str(folder), "--logs", str(tmp_path)))
    assert train_eval.make_config(evaluated, 4, "inference").MIXED_PRECISION == "mixed_float16"
    assert train_eval.make_config(parse("train", "--dataset", "x"), 4, "training").MIXED_PRECISION is None

"""Tests for mrcnn_ohem.diagnose on small fork-like model modules written here."""
from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest

import mrcnn_ohem

diagnose_module = importlib.import_module("mrcnn_ohem.diagnose")

#: Matterport's two patch targets, with their signatures; bodies do not matter here.
TARGETS = '''
def rpn_class_loss_graph(rpn_match, rpn_class_logits):
    return 0.0


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
    return None, None
'''

GOOD_TRAIN = '''
def train(keras_model, generator):
    optimizer = keras.optimizers.legacy.SGD(learning_rate=0.001, momentum=0.9)
    keras_model.fit(generator, workers=1, use_multiprocessing=False)
'''

FORKS = {
    # Keeps Matterport's layout and fixes all three: nothing to report.
    "good": "import tf_keras as keras\n" + TARGETS + GOOD_TRAIN,
    # Disables eager execution, then builds the new optimizer.
    "sgd": "import tensorflow as tf\nimport tf_keras as keras\n" + TARGETS + '''
def compile(keras_model):
    tf.compat.v1.disable_eager_execution()
    optimizer = keras.optimizers.SGD(learning_rate=0.001, momentum=0.9)
''',
    # Written for Keras 2.3: fails to import under TF 2.16+.
    "engine": "import keras.engine as KE\n" + TARGETS,
    # Forks one loader process per core.
    "workers": "import multiprocessing\n" + TARGETS + '''
def train(keras_model, generator):
    keras_model.fit(generator, workers=multiprocessing.cpu_count(), use_multiprocessing=True)
''',
    # Renamed Matterport's loss into a layer class: patch() cannot reach it.
    "renamed": '''
class RPNClassLoss:
    pass


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
    return None, None
''',
    # The loss takes one argument.
    "signature": TARGETS.replace("rpn_class_loss_graph(rpn_match, rpn_class_logits)", "rpn_class_loss_graph(inputs)"),
}


def _line_of(fork: str, text: str) -> int:
    """1-based line of ``text`` in a fork's source."""
    return next(i for i, line in enumerate(FORKS[fork].splitlines(), start=1) if text in line)


@pytest.fixture
def forks(tmp_path, monkeypatch) -> Path:
    """A package per fork, ``<fork>_fork/mrcnn/model.py``-like: ``fork_<name>.model``."""
    for name, source in FORKS.items():
        package = tmp_path / f"fork_{name}"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "model.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_fixed_fork_is_reachable_with_nothing_to_report(forks):
    report = mrcnn_ohem.diagnose("fork_good.model")
    assert report.ok and report.reachable and report.breakages == [] and report.problems == []
    assert "patch(): can reach" in str(report) and "known breakages: none found" in str(report)


def test_sgd_with_eager_disabled_is_found_with_its_line(forks):
    report = mrcnn_ohem.diagnose("fork_sgd.model")
    assert report.reachable and not report.ok
    (breakage,) = report.breakages
    assert breakage.key == "sgd-get-updates" and "keras.optimizers.SGD(" in breakage.evidence
    assert breakage.line == _line_of("sgd", "keras.optimizers.SGD(")
    assert "keras.optimizers.legacy.SGD" in str(report)


def test_keras_engine_fork_fails_to_import_and_says_why(forks):
    report = mrcnn_ohem.diagnose("fork_engine.model")
    assert not report.reachable
    assert any("No module named 'keras.engine'" in p for p in report.problems), report.problems
    assert [b.key for b in report.breakages] == ["keras-engine"] and report.breakages[0].line == 1
    assert "TF_USE_LEGACY_KERAS=1" in str(report)


def test_multiprocessing_workers_are_found(forks):
    report = mrcnn_ohem.diagnose("fork_workers.model")
    assert report.reachable and [b.key for b in report.breakages] == ["multiprocessing-workers"]
    assert "use_multiprocessing=False" in report.breakages[0].fix


def test_renamed_or_resigned_functions_give_patch_s_own_messages(forks):
    renamed = mrcnn_ohem.diagnose("fork_renamed.model")
    assert not renamed.reachable
    assert renamed.problems == ["AttributeError: module 'fork_renamed.model' has no function "
                                "'rpn_class_loss_graph'; patch() expects a Matterport-style model "
                                "module (mrcnn.model or a fork of it)"]
    import fork_signature.model as module

    resigned = mrcnn_ohem.diagnose(module)  # a module object works too
    assert not resigned.reachable
    assert resigned.problems[0].startswith("TypeError: fork_signature.model.rpn_class_loss_graph must accept 2 "
                                           "positional arguments")


def test_the_bundled_model_is_reachable():
    # The submodule is imported above, so mrcnn_ohem.diagnose may be the module: both calls work.
    report = mrcnn_ohem.diagnose("mrcnn_ohem.maskrcnn.model")
    assert report.reachable, report.problems
    assert diagnose_module.diagnose("mrcnn_ohem.maskrcnn.model").reachable


def test_command_line_prints_reports_and_exits_by_outcome(forks, capsys):
    assert diagnose_module.main(["fork_good.model"]) == 0
    assert "module fork_good.model" in capsys.readouterr().out
    assert diagnose_module.main([str(forks / "fork_workers" / "model.py"), "fork_good.model"]) == 1
    out = capsys.readouterr().out
    assert "known breakage multiprocessing-workers" in out
    assert f"line {_line_of('workers', 'use_multiprocessing=True')}:" in out
    assert diagnose_module.main(["no_such_fork.model"]) == 1
    assert "import failed: ModuleNotFoundError" in capsys.readouterr().out

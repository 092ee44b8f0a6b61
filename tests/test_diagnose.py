"""Tests for mrcnn_ohem.diagnosis (mrcnn_ohem.diagnose): small fork-like model modules written here, and the shared
Matterport TF2 fork (in subprocesses: it disables eager execution when it is imported)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from mrcnn_ohem.diagnosis import Environment, diagnose, find_breakages

#: The module that defines ``mrcnn_ohem.diagnose``.
diagnose_module = sys.modules["mrcnn_ohem.diagnosis"]

REPO = Path(__file__).resolve().parents[1]
FORK = REPO.parent / "shared" / "forks" / "mask_rcnn_tf2_14" / "mrcnn"
needs_fork = pytest.mark.skipif(not (FORK / "model.py").is_file(),
                                reason=f"the shared Matterport TF2 fork is not at {FORK}")

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
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fork_")]:  # the next test's are elsewhere
        del sys.modules[name]


def test_a_fixed_fork_is_reachable_with_nothing_to_report(forks):
    report = diagnose("fork_good.model")
    assert report.ok and report.reachable and report.breakages == [] and report.problems == []
    assert "patch(): can reach" in str(report) and "known breakages: none found" in str(report)


def test_sgd_with_eager_disabled_is_found_with_its_line(forks):
    report = diagnose("fork_sgd.model")
    assert report.reachable and not report.ok
    (breakage,) = report.breakages
    assert breakage.key == "sgd-get-updates" and "keras.optimizers.SGD(" in breakage.evidence
    assert breakage.line == _line_of("sgd", "keras.optimizers.SGD(")
    assert "keras.optimizers.legacy.SGD" in str(report)


def test_keras_engine_fork_fails_to_import_and_says_why(forks):
    report = diagnose("fork_engine.model")
    assert not report.reachable
    assert any("No module named 'keras.engine'" in p for p in report.problems), report.problems
    assert [b.key for b in report.breakages] == ["keras-engine"] and report.breakages[0].line == 1
    assert "TF_USE_LEGACY_KERAS=1" in str(report)


def test_multiprocessing_workers_are_found(forks):
    report = diagnose("fork_workers.model")
    assert report.reachable and [b.key for b in report.breakages] == ["multiprocessing-workers"]
    assert "use_multiprocessing=False" in report.breakages[0].fix


def test_renamed_or_resigned_functions_give_patch_s_own_messages(forks):
    renamed = diagnose("fork_renamed.model")
    assert not renamed.reachable
    assert renamed.problems == ["AttributeError: module 'fork_renamed.model' has no function "
                                "'rpn_class_loss_graph'; patch() expects a Matterport-style model "
                                "module (mrcnn.model or a fork of it)"]
    import fork_signature.model as module

    resigned = diagnose(module)  # a module object works too
    assert not resigned.reachable
    assert resigned.problems[0].startswith("TypeError: fork_signature.model.rpn_class_loss_graph must accept 2 "
                                           "positional arguments")


def test_the_bundled_model_is_reachable():
    report = diagnose("mrcnn_ohem.maskrcnn.model")
    assert report.reachable, report.problems


def test_command_line_prints_reports_and_exits_by_outcome(forks, capsys):
    assert diagnose_module.main(["fork_good.model"]) == 0
    assert "module fork_good.model" in capsys.readouterr().out
    assert diagnose_module.main([str(forks / "fork_workers" / "model.py"), "fork_good.model"]) == 1
    out = capsys.readouterr().out
    assert "known breakage multiprocessing-workers" in out
    assert f"line {_line_of('workers', 'use_multiprocessing=True')}:" in out
    assert diagnose_module.main(["no_such_fork.model"]) == 1
    assert "import failed: ModuleNotFoundError" in capsys.readouterr().out


# --- the breakages of today's NumPy, scikit-image, Keras and Python (issue 27) ------------------

#: A Matterport-like utils.py, written here: the mini-mask functions as the forks have them, and
#: the same two with the mask cast to float before it is resized.
UTILS = '''
import numpy as np
import skimage.transform


def resize(image, output_shape, order=1):
    return skimage.transform.resize(image, output_shape, order=order, mode="constant",
                                    preserve_range=False, anti_aliasing=False)


def minimize_mask(bbox, mask, mini_shape):
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        m = mask[:, :, i].astype(bool)
        y1, x1, y2, x2 = bbox[i][:4]
        m = m[y1:y2, x1:x2]
        m = resize(m, mini_shape)
        mini_mask[:, :, i] = np.around(m).astype(np.bool)  # np.bool: gone in NumPy 1.24-1.26
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    mask = np.zeros(image_shape[:2] + (mini_mask.shape[-1],), dtype=np.bool_)
    for i in range(mask.shape[-1]):
        m = mini_mask[:, :, i]
        y1, x1, y2, x2 = bbox[i][:4]
        m = resize(m, (y2 - y1, x2 - x1))
        mask[y1:y2, x1:x2, i] = np.around(m).astype(bool)
    return mask
'''

FIXED_UTILS = (UTILS.replace("m = mask[:, :, i].astype(bool)", "m = mask[:, :, i].astype(np.float32)")
               .replace("m = resize(m, (y2 - y1, x2 - x1))", "m = resize(m.astype(float), (y2 - y1, x2 - x1))")
               .replace("astype(np.bool)", "astype(bool)"))

MODEL = '''import numpy as np
from distutils.version import LooseVersion
import tensorflow.keras.layers as KL


def load_image_gt(mask):
    return mask.astype(np.bool)
'''


def _environment(**changes) -> Environment:
    """This test's environment: TensorFlow 2.21 with TF_USE_LEGACY_KERAS=1, NumPy 2, skimage 0.26."""
    values = dict(python="3.11.7", tensorflow="2.21.0", keras="3.15.1", numpy="2.4.6", skimage="0.26.0",
                  legacy_keras=True, distutils=True)
    return Environment(**{**values, **changes})


def _lines(source: str, text: str) -> list[int]:
    return [i for i, line in enumerate(source.splitlines(), start=1) if text in line.split("#")[0]]


def _found(environment: Environment, model: str = MODEL, utils: str = UTILS, module=None) -> dict:
    breakages = find_breakages({"pkg/model.py": model, "pkg/utils.py": utils}, environment, module)
    return {b.key: b for b in breakages}


@pytest.mark.parametrize("numpy_version,applies", [("1.23.5", False), ("1.24.0", True), ("1.26.4", True),
                                                   ("2.0.0", False), ("2.4.6", False)])
def test_np_bool_is_found_on_every_line_and_breaks_only_with_numpy_1_24_to_1_26(numpy_version, applies):
    breakage = _found(_environment(numpy=numpy_version))["np-bool"]
    # model.py line 7; utils.py: minimize_mask's astype(np.bool) only (np.bool_ and bool are fine,
    # and the comment's np.bool is no code).
    assert [(o.file, o.line) for o in breakage.occurrences] == [
        ("pkg/model.py", 7), ("pkg/utils.py", _lines(UTILS, "astype(np.bool)")[0])]
    assert breakage.applies is applies and "NumPy " + numpy_version in breakage.condition
    assert "instead of np.bool" in breakage.fix


@pytest.mark.parametrize("skimage_version,applies", [("0.18.3", False), ("0.19.0", True), ("0.26.0", True)])
def test_bool_resizes_of_the_mini_masks_are_found_with_their_lines(skimage_version, applies):
    breakage = _found(_environment(skimage=skimage_version))["skimage-bool-resize"]
    assert [o.line for o in breakage.occurrences] == [_lines(UTILS, "m = resize(m, mini_shape)")[0],
                                                      _lines(UTILS, "m = resize(m, (y2 - y1")[0]]
    assert {o.file for o in breakage.occurrences} == {"pkg/utils.py"} and breakage.applies is applies
    assert "skimage-bool-resize" not in _found(_environment(), utils=FIXED_UTILS)


def test_the_flagged_resizes_fail_and_the_cast_ones_work_on_the_installed_scikit_image():
    """The real scikit-image decides: the lines flagged fail, the fixed ones run (0.19+)."""
    import skimage

    assert tuple(int(p) for p in skimage.__version__.split(".")[:2]) >= (0, 19)
    flagged, fixed = {}, {}
    exec(compile(UTILS, "utils.py", "exec"), flagged)  # noqa: S102 - our own source, above
    exec(compile(FIXED_UTILS, "utils.py", "exec"), fixed)  # noqa: S102
    mask = np.zeros((8, 8, 1), bool)
    mask[2:6, 2:6, 0] = True
    bbox = np.array([[2, 2, 6, 6]])
    with pytest.raises(ValueError, match="Input image dtype is bool"):
        flagged["minimize_mask"](bbox, mask, (4, 4))
    with pytest.raises(ValueError, match="Input image dtype is bool"):
        flagged["expand_mask"](bbox, np.ones((4, 4, 1), bool), (8, 8))
    np.testing.assert_array_equal(fixed["minimize_mask"](bbox, mask, (4, 4))[..., 0], np.ones((4, 4), bool))
    np.testing.assert_array_equal(fixed["expand_mask"](bbox, np.ones((4, 4, 1), bool), (8, 8)), mask)


@pytest.mark.parametrize("importable", [True, False])
def test_distutils_is_a_breakage_only_where_it_cannot_be_imported(importable):
    breakage = _found(_environment(distutils=importable))["distutils"]
    assert [(o.file, o.line) for o in breakage.occurrences] == [("pkg/model.py", 2)]
    assert breakage.applies is not importable and "pip install setuptools" in breakage.fix


@pytest.mark.parametrize("tensorflow,legacy,applies", [("2.21.0", False, True), ("2.16.1", False, True),
                                                       ("2.21.0", True, False), ("2.15.1", False, False)])
def test_keras_3_is_read_from_the_environment_when_the_module_did_not_import(tensorflow, legacy, applies):
    breakage = _found(_environment(tensorflow=tensorflow, legacy_keras=legacy))["keras-3"]
    assert [o.line for o in breakage.occurrences] == [3] and breakage.applies is applies
    assert "TF_USE_LEGACY_KERAS=1" in breakage.fix


def test_keras_3_is_read_from_the_module_s_own_objects_when_it_imported():
    import keras  # Keras 3, which TensorFlow 2.16+ installs
    import tf_keras

    fork = ModuleType("fork.model")
    fork.KL = keras.layers
    breakage = _found(_environment(legacy_keras=True), module=fork)["keras-3"]  # the module decides
    assert breakage.applies and "KL (keras.src." in breakage.condition
    fork.KL = tf_keras.layers
    assert not _found(_environment(legacy_keras=False), module=fork)["keras-3"].applies


def test_environment_reads_tf_use_legacy_keras(monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    assert Environment.current().legacy_keras and not Environment.current().tf_keras_is_keras3
    monkeypatch.delenv("TF_USE_LEGACY_KERAS")
    here = Environment.current()
    assert not here.legacy_keras and here.tf_keras_is_keras3  # TensorFlow 2.16+ is installed
    assert "TF_USE_LEGACY_KERAS unset: tf.keras is Keras 3" in str(here)


def test_a_breakage_that_does_not_apply_here_is_listed_but_does_not_fail(forks):
    (forks / "fork_good" / "utils.py").write_text("import numpy as np\nFLAG = np.bool\n")
    report = diagnose("fork_good.model")
    assert report.ok == (report.breakages[0].applies is False)
    text = str(report)
    assert ("would break elsewhere np-bool" in text) == (not report.breakages[0].applies)
    assert "utils.py line 2: FLAG = np.bool" in text


# --- the path form, and the module as users import it -------------------------------------------

def test_a_path_is_imported_as_its_package_s_module_from_any_folder(tmp_path, monkeypatch):
    package = tmp_path / "myproject" / "fork_pathform"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "utils.py").write_text("VALUE = 1\n")
    (package / "model.py").write_text("from fork_pathform import utils\n" + textwrap.dedent(TARGETS))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))  # diagnose adds myproject; undone after the test
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    report = diagnose(os.path.join("..", "myproject", "fork_pathform", "model.py"))
    assert report.reachable, report.problems
    assert report.module == "fork_pathform.model" and str(tmp_path / "myproject") in sys.path


@pytest.mark.parametrize("first", ["import mrcnn_ohem.diagnosis", "import mrcnn_ohem; mrcnn_ohem.diagnose"])
def test_the_module_is_a_plain_module_and_the_package_hands_out_the_function(first):
    assert type(diagnose_module) is ModuleType and not callable(diagnose_module)
    # In either order (importing the module first once left the module where the function belongs).
    code = (f"import sys; {first}; from mrcnn_ohem import diagnose as f; import mrcnn_ohem; "
            "assert callable(f) and f.__module__ == 'mrcnn_ohem.diagnosis' and mrcnn_ohem.diagnose is f; "
            "assert 'tensorflow' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def _child_env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def test_missing_distutils_is_reported_with_its_line_as_on_python_3_12(tmp_path):
    """Python 3.12 without setuptools, simulated: no site (so no setuptools shim) and the
    standard library's distutils hidden from the import system."""
    package = tmp_path / "fork_nodistutils"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("import os\nfrom distutils.version import LooseVersion\n" + TARGETS)
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    code = textwrap.dedent('''
        import importlib.machinery, sys
        class NoDistutils(importlib.machinery.PathFinder):
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name.split(".")[0] == "distutils":
                    return None
                return super().find_spec(name, path, target)
        sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = NoDistutils
        try:
            import distutils
        except ModuleNotFoundError as err:
            print("import:", err)
        from mrcnn_ohem.diagnosis import diagnose
        report = diagnose(sys.argv[1])
        print(report)
        print("ok:", report.ok)
    ''')
    done = subprocess.run([sys.executable, "-S", "-c", code, str(package / "model.py")], cwd=tmp_path,
                          env={**_child_env(), "PYTHONPATH": os.pathsep.join([str(REPO), site_packages])},
                          capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert "import: No module named 'distutils'" in out, done.stderr  # what Python 3.12 says
    assert "import failed: ModuleNotFoundError: No module named 'distutils'" in out
    assert "known breakage distutils:" in out and "model.py line 2: from distutils.version" in out
    assert "distutils missing" in out and "ok: False" in out


# --- the shared fork ----------------------------------------------------------------------------

def _fork_lines(file: str, wanted, functions: tuple[str, ...] = ()) -> list[int]:
    """1-based lines of the fork's ``file`` (code, not comments) for which ``wanted(line)`` holds,
    inside ``functions`` when given."""
    found, inside = [], not functions
    for number, line in enumerate((FORK / file).read_text().splitlines(), start=1):
        if functions and re.match(r"(def|class) ", line):
            inside = any(line.startswith(f"def {name}(") for name in functions)
        if inside and not line.strip().startswith("#") and wanted(line):
            found.append(number)
    return found


@pytest.mark.slow  # TensorFlow and the fork in a subprocess: 4 s idle, 8 s under load
@needs_fork
def test_the_shared_fork_shows_each_new_breakage_on_its_lines(tmp_path):
    code = textwrap.dedent('''
        import json, sys
        import numpy as np
        from mrcnn_ohem.diagnosis import diagnose
        report = diagnose(sys.argv[1])
        import mrcnn.utils
        try:  # the fork's own minimize_mask on a bool mask, as load_image_gt calls it
            mrcnn.utils.minimize_mask(np.array([[0, 0, 4, 4]]), np.ones((4, 4, 1), bool), (2, 2))
            error = None
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
        print(json.dumps({"module": report.module, "reachable": report.reachable, "error": error,
                          "numpy": np.__version__,
                          "breakages": {b.key: [b.applies, [[f.rsplit("/", 1)[-1], line]
                                                            for f, line, _ in b.occurrences]]
                                        for b in report.breakages}}))
    ''')
    done = subprocess.run([sys.executable, "-c", code, str(FORK / "model.py")], cwd=tmp_path,
                          env=_child_env(TF_USE_LEGACY_KERAS="1"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"] == "mrcnn.model" and result["reachable"]
    found = {key: (applies, [tuple(o) for o in lines]) for key, (applies, lines) in result["breakages"].items()}

    def bool_alias(line: str) -> bool:
        return "np.bool" in line.replace("np.bool_", "")

    np_bool = [("model.py", n) for n in _fork_lines("model.py", bool_alias)]
    np_bool += [("utils.py", n) for n in _fork_lines("utils.py", bool_alias)]
    assert len(np_bool) == 5 and found["np-bool"][1] == np_bool
    numpy_1_24_to_1_26 = result["numpy"].startswith("1.") and int(result["numpy"].split(".")[1]) >= 24
    assert found["np-bool"][0] is numpy_1_24_to_1_26

    resizes = [("model.py", n) for n in _fork_lines("model.py", lambda t: "utils.resize(" in t,
                                                    ("build_detection_targets",))]
    resizes += [("utils.py", n) for n in _fork_lines("utils.py", lambda t: "resize(" in t,
                                                     ("minimize_mask", "expand_mask"))]
    assert len(resizes) == 4 and found["skimage-bool-resize"] == (True, resizes)
    assert "Input image dtype is bool" in result["error"]  # the fork itself fails as reported

    distutils = [(f, n) for f in ("model.py", "utils.py")
                 for n in _fork_lines(f, lambda t: t.startswith("from distutils"))]
    assert found["distutils"] == (False, distutils)  # Python 3.11 here: distutils imports
    assert found["keras-3"][0] is False  # TF_USE_LEGACY_KERAS=1: the fork's Keras is tf_keras
    assert found["keras-3"][1][0] == ("model.py", _fork_lines("model.py", lambda t: t.startswith(
        "import tensorflow.keras as keras"))[0])


@pytest.mark.slow  # TensorFlow and the fork in a subprocess: 4 s idle, 8 s under load
@needs_fork
def test_the_documented_path_form_from_the_folder_above_the_project(tmp_path):
    shutil.copytree(FORK, tmp_path / "myproject" / "mrcnn")
    done = subprocess.run([sys.executable, "-m", "mrcnn_ohem.diagnosis", "myproject/mrcnn/model.py"],
                          cwd=tmp_path, env=_child_env(), capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert "No module named 'mrcnn'" not in out and "module mrcnn.model (myproject/mrcnn/model.py)" in out
    assert "patch(): can reach rpn_class_loss_graph and build_rpn_targets" in out, out + done.stderr[-2000:]
    # TF_USE_LEGACY_KERAS unset: the fork's KL is Keras 3, which patch() cannot run on.
    assert "TF_USE_LEGACY_KERAS unset: tf.keras is Keras 3" in out
    assert "known breakage keras-3:" in out and "KL (keras.src." in out
    assert done.returncode == 1

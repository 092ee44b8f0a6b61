"""Check a user's Matterport-style model module (``mrcnn.model`` of a fork) before patching it.

``diagnose(module)`` answers two questions about a fork:

1. Can :func:`mrcnn_ohem.patch` reach it? The module must import, and define
   ``rpn_class_loss_graph`` and ``build_rpn_targets`` with Matterport's signatures; the check is
   :mod:`mrcnn_ohem.patching`'s own, so the answer is exactly what ``patch()`` would say.
2. Which known breakages of public TF2 forks does it show, and which of them break in the
   running environment? Found by reading the model module's source and its package's
   ``utils.py`` (:data:`BREAKAGES` lists them with their symptom and fix):

   - ``keras-3``: ``tf.keras`` is Keras 3 (TensorFlow 2.16+ without ``TF_USE_LEGACY_KERAS=1``).
   - ``sgd-get-updates``: eager execution disabled and ``keras.optimizers.SGD`` built.
   - ``keras-engine``: ``keras.engine`` imported (TF 2.0-2.2 / Keras 2.3 code).
   - ``multiprocessing-workers``: ``use_multiprocessing=True`` in ``fit``.
   - ``np-bool``: ``np.bool``, absent from NumPy 1.24 to 1.26 (NumPy 2.0 defines it again).
   - ``skimage-bool-resize``: bool masks resized with interpolation in ``minimize_mask`` /
     ``expand_mask``, which scikit-image 0.19+ refuses; hit with ``USE_MINI_MASK = True``.
   - ``distutils``: ``distutils`` imported, which Python 3.12 removed (PEP 632); it imports only
     where setuptools provides it, and venvs on 3.12 no longer install setuptools.

   A breakage whose condition does not hold here (say ``np.bool`` under NumPy 2) is listed as
   one that would break elsewhere, and does not fail the check.

Command line: ``python -m mrcnn_ohem.diagnosis mrcnn.model`` or the path of the file, from any
folder (``python -m mrcnn_ohem.diagnosis Mask_RCNN/mrcnn/model.py`` imports it as
``mrcnn.model``, with ``Mask_RCNN`` on ``sys.path``). It prints the report; the exit code is 0
when ``patch()`` can reach every module and no breakage applies here, else 1.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

__all__ = ["diagnose", "Diagnosis", "Breakage", "Occurrence", "Environment", "BREAKAGES", "find_breakages",
           "main"]


# --- what is installed ---------------------------------------------------------------------------

def _installed(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a version string, None when there is none."""
    if not version:
        return None
    numbers = [int(re.match(r"\d*", part).group() or 0) for part in version.split(".")[:2]]
    return (numbers + [0])[0], (numbers + [0, 0])[1]


def _distutils_importable() -> bool:
    try:
        return importlib.util.find_spec("distutils") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Environment:
    """The versions that decide whether a breakage breaks here.

    Attributes:
        python: the interpreter's ``"3.11.7"``.
        tensorflow, keras, numpy, skimage: installed versions (None: not installed).
        legacy_keras: ``TF_USE_LEGACY_KERAS`` is on (``1``/``true``/``True``).
        distutils: ``import distutils`` can succeed (the standard library's before Python 3.12,
            or setuptools' copy).
    """

    python: str
    tensorflow: str | None
    keras: str | None
    numpy: str | None
    skimage: str | None
    legacy_keras: bool
    distutils: bool

    @classmethod
    def current(cls) -> Environment:
        """The running interpreter's environment (versions read from package metadata)."""
        from mrcnn_ohem._compat import legacy_keras_requested

        return cls(python=".".join(map(str, sys.version_info[:3])),
                   tensorflow=_installed("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
                   keras=_installed("keras"), numpy=_installed("numpy"), skimage=_installed("scikit-image"),
                   legacy_keras=legacy_keras_requested(), distutils=_distutils_importable())

    @property
    def tf_keras_is_keras3(self) -> bool:
        """``tf.keras`` is Keras 3: TensorFlow 2.16+ with ``TF_USE_LEGACY_KERAS`` off."""
        release = _release(self.tensorflow)
        return release is not None and release >= (2, 16) and not self.legacy_keras

    def __str__(self) -> str:
        tf_keras = "Keras 3" if self.tf_keras_is_keras3 else "tf_keras, Keras 2"
        setting = os.environ.get("TF_USE_LEGACY_KERAS")
        legacy = f"TF_USE_LEGACY_KERAS={setting}" if setting else "TF_USE_LEGACY_KERAS unset"
        parts = [f"Python {self.python}",
                 f"TensorFlow {self.tensorflow} ({legacy}: tf.keras is {tf_keras})" if self.tensorflow
                 else "TensorFlow not installed",
                 f"NumPy {self.numpy}", f"scikit-image {self.skimage}",
                 "distutils importable" if self.distutils else "no distutils"]
        return ", ".join(parts)


# --- the breakages -------------------------------------------------------------------------------

class Occurrence(NamedTuple):
    """One line that shows a breakage: ``file`` (its path), ``line`` (1-based), ``text`` (stripped)."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class Breakage:
    """One known breakage found in a fork's source.

    Attributes:
        key: one of :data:`BREAKAGES`.
        line: 1-based line of the first evidence (0: not from a line).
        evidence: that line, stripped.
        symptom: the error users see.
        fix: what to change.
        occurrences: every line that shows it, first one first.
        applies: whether it breaks in the environment it was checked in.
        condition: where it breaks, with what is installed here when that decides it.
    """

    key: str
    line: int
    evidence: str
    symptom: str
    fix: str
    occurrences: tuple[Occurrence, ...] = ()
    applies: bool = True
    condition: str = ""


#: key -> (symptom, fix) of the breakages :func:`diagnose` looks for.
BREAKAGES = {
    "keras-3": (
        "NotImplementedError: ... could not automatically infer the shape of the Lambda's output "
        "(the fork's Keras is Keras 3: TensorFlow 2.16+ maps tf.keras to Keras 3 unless "
        "TF_USE_LEGACY_KERAS=1 is set)",
        "set TF_USE_LEGACY_KERAS=1 before TensorFlow is first imported (and pip install tf-keras), "
        "or import Keras 2 explicitly in the fork ('import tf_keras as keras')",
    ),
    "sgd-get-updates": (
        "'SGD' object has no attribute 'get_updates' (eager execution disabled with the new "
        "Keras optimizer)",
        "build keras.optimizers.legacy.SGD(...) instead of keras.optimizers.SGD(...)",
    ),
    "keras-engine": (
        "No module named 'keras.engine' (code written for TF 2.0-2.2 and Keras 2.3)",
        "import Keras 2 explicitly ('import tf_keras as keras'; KE.Layer -> keras.layers.Layer), "
        "or set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported and use tf.keras",
    ),
    "multiprocessing-workers": (
        "data-loader worker processes hang at exit (use_multiprocessing=True)",
        "pass use_multiprocessing=False and workers=1 to fit() in MaskRCNN.train",
    ),
    "np-bool": (
        "AttributeError: module 'numpy' has no attribute 'bool' (in the data generator and the "
        "mini masks)",
        "write bool (or np.bool_) instead of np.bool",
    ),
    "skimage-bool-resize": (
        "ValueError: Input image dtype is bool. Interpolation is not defined with bool data type "
        "(resizing masks with USE_MINI_MASK = True, Matterport's default)",
        "cast the mask before resizing it: resize(m.astype(np.float32), ...), then round back "
        "to bool as before",
    ),
    "distutils": (
        "ModuleNotFoundError: No module named 'distutils' when the fork is imported",
        "compare versions without distutils (packaging.version.Version, or drop the check), or "
        "pip install setuptools, which provides distutils",
    ),
}

_KERAS_ENGINE = re.compile(r"^\s*(from\s+(tensorflow\.(python\.)?)?keras\.engine\b|"
                           r"import\s+(tensorflow\.(python\.)?)?keras\.engine\b)|keras\.engine\.\w+")
_DISABLE_EAGER = re.compile(r"disable_eager_execution\s*\(|disable_v2_behavior\s*\(")
_NEW_SGD = re.compile(r"optimizers\.SGD\s*\(")
_MULTIPROCESSING = re.compile(r"use_multiprocessing\s*=\s*True")
_NP_BOOL = re.compile(r"\b(np|numpy)\.bool\b(?!_)")
_DISTUTILS = re.compile(r"^\s*(from\s+distutils\b|import\s+distutils\b)")
_TF_KERAS = re.compile(r"^\s*(import\s+tensorflow\.keras\b|from\s+tensorflow\.keras\b|"
                       r"from\s+tensorflow\s+import\s+keras\b)|\btf\.keras\.")
_PLAIN_KERAS = re.compile(r"^\s*(import\s+keras\b|from\s+keras\b)(?!\.engine)")
_MINI_MASK_OFF = re.compile(r"^\s+USE_MINI_MASK\s*=\s*False\b")
#: Matterport's functions that resize masks which are bool (``random_rois`` only for the last).
_MASK_RESIZERS = ("minimize_mask", "expand_mask", "build_detection_targets")


def _code_lines(source: str) -> list[str]:
    """The source's lines without their ``#`` comments."""
    return [text.split("#", 1)[0] for text in source.splitlines()]


def _matches(pattern: re.Pattern, file: str, source: str) -> list[Occurrence]:
    full = source.splitlines()
    return [Occurrence(file, number, full[number - 1].strip())
            for number, code in enumerate(_code_lines(source), start=1) if pattern.search(code)]


def _casts_to_non_bool(node: ast.AST) -> bool:
    """Whether an expression contains ``.astype(X)`` with X other than bool / np.bool / np.bool_."""
    for call in ast.walk(node):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "astype" and call.args):
            dtype = ast.unparse(call.args[0])
            if dtype not in ("bool", "np.bool", "np.bool_", "numpy.bool", "numpy.bool_", "'bool'", '"bool"'):
                return True
    return False


def _cast_before(name: str, line: int, assignments: list[tuple[int, ast.AST]], names: dict[int, set[str]]) -> bool:
    """Whether ``name`` was cast to a non-bool dtype on its way to ``line``: its assignments are
    followed back while each one derives it from itself (``m = m[y1:y2, x1:x2]``)."""
    for number, value in sorted(assignments, key=lambda a: a[0], reverse=True):
        if number >= line or name not in names[number]:
            continue
        if _casts_to_non_bool(value):
            return True
        if not any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(value)):
            return False
    return False


def _bool_resizes(file: str, source: str) -> list[Occurrence]:
    """The ``resize(mask, ...)`` calls inside Matterport's mask functions that pass a bool mask.

    A call is left out when it passes ``order=0``, when its first argument, or an assignment of
    that name on its way to the call (:func:`_cast_before`), casts to a non-bool dtype, or when
    the file's own ``resize`` wrapper deals with bool input (its body mentions ``bool``).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "resize" and "bool" in ast.unparse(node):
            return []
    found = []
    for function in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in _MASK_RESIZERS):
        assignments = [(n.lineno, n.value) for n in ast.walk(function) if isinstance(n, ast.Assign)
                       for target in n.targets if isinstance(target, ast.Name)]
        names = {n.lineno: {t.id for t in n.targets if isinstance(t, ast.Name)}
                 for n in ast.walk(function) if isinstance(n, ast.Assign)}
        for call in ast.walk(function):
            callee = call.func if isinstance(call, ast.Call) else None
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", None)
            if name != "resize" or not call.args:
                continue
            if any(k.arg == "order" and ast.unparse(k.value) == "0" for k in call.keywords):
                continue
            mask = call.args[0]
            if _casts_to_non_bool(mask):
                continue
            if isinstance(mask, ast.Name) and _cast_before(mask.id, call.lineno, assignments, names):
                continue
            found.append(Occurrence(file, call.lineno, lines[call.lineno - 1].strip()))
    return sorted(found, key=lambda o: o.line)


def _at_least(version: str | None, release: tuple[int, int]) -> bool:
    found = _release(version)
    return found is not None and found >= release


def find_breakages(files: Mapping[str, str], environment: Environment,
                   module: ModuleType | None = None) -> list[Breakage]:
    """The known breakages (:data:`BREAKAGES`) that a fork's files show.

    Args:
        files: path -> source text; the first is the model module, the others (its package's
            ``utils.py`` and ``config.py``) are read for ``np.bool``, bool resizes, ``distutils``
            and the config's ``USE_MINI_MASK``.
        environment: decides which breakages apply (see :class:`Environment`).
        module: the imported model module, when it imported: its Keras objects decide
            ``keras-3`` instead of the environment.

    Returns:
        One :class:`Breakage` per key found, with every occurrence, in :data:`BREAKAGES` order.
    """
    (model_file, model_source), *_ = files.items()
    everywhere = list(files.items())
    found: dict[str, tuple[list[Occurrence], bool, str]] = {}

    tf_lines = _matches(_TF_KERAS, model_file, model_source)
    plain_lines = _matches(_PLAIN_KERAS, model_file, model_source)
    if module is not None:
        from mrcnn_ohem._compat import keras_names

        keras3 = {n: o for n, (f, o) in keras_names(module).items() if f == "keras3"}
        condition = ("Keras 3 objects in this module: " + ", ".join(f"{n} ({o})" for n, o in keras3.items())
                     if keras3 else "tf.keras as Keras 3; this module's Keras is Keras 2 (tf_keras)")
        if tf_lines or plain_lines or keras3:
            found["keras-3"] = (tf_lines + plain_lines, bool(keras3), condition)
    else:
        keras3_installed = _at_least(environment.keras, (3, 0))
        if tf_lines or plain_lines:
            applies = bool(tf_lines and environment.tf_keras_is_keras3 or plain_lines and keras3_installed)
            found["keras-3"] = (tf_lines + plain_lines, applies,
                                f"TensorFlow 2.16+ without TF_USE_LEGACY_KERAS=1 (here: {environment.tensorflow}, "
                                f"TF_USE_LEGACY_KERAS {'on' if environment.legacy_keras else 'off'})")
    sgd = _matches(_NEW_SGD, model_file, model_source)
    if sgd and _matches(_DISABLE_EAGER, model_file, model_source):
        found["sgd-get-updates"] = (sgd, True, "")
    engine = _matches(_KERAS_ENGINE, model_file, model_source)
    if engine:
        found["keras-engine"] = (engine, True, "")
    workers = _matches(_MULTIPROCESSING, model_file, model_source)
    if workers:
        found["multiprocessing-workers"] = (workers, True, "")
    np_bool = [o for path, text in everywhere for o in _matches(_NP_BOOL, path, text)]
    if np_bool:
        release = _release(environment.numpy)
        found["np-bool"] = (np_bool, release is not None and (1, 24) <= release < (2, 0),
                            f"NumPy 1.24 to 1.26, which TensorFlow 2.16 and 2.17 require "
                            f"(here: NumPy {environment.numpy})")
    resizes = [o for path, text in everywhere for o in _bool_resizes(path, text)]
    if resizes:
        condition = f"scikit-image 0.19+ (here: {environment.skimage})"
        off = [o for path, text in everywhere if Path(path).name == "config.py"
               for o in _matches(_MINI_MASK_OFF, path, text)]
        if off:
            condition += (f"; this fork's config.py line {off[0].line} sets USE_MINI_MASK = False, so only a "
                          "config that sets it True (or random_rois) reaches these lines")
        found["skimage-bool-resize"] = (resizes, _at_least(environment.skimage, (0, 19)), condition)
    distutils = [o for path, text in everywhere for o in _matches(_DISTUTILS, path, text)]
    if distutils:
        here = "importable" if environment.distutils else "missing"
        found["distutils"] = (distutils, not environment.distutils,
                              "Python 3.12+ without setuptools, e.g. a venv made on 3.12 (here: Python "
                              f"{environment.python}, distutils {here})")
    breakages = []
    for key in BREAKAGES:
        if key in found:
            occurrences, applies, condition = found[key]
            first = occurrences[0] if occurrences else Occurrence(model_file, 0, "")
            breakages.append(Breakage(key, first.line, first.text, *BREAKAGES[key], occurrences=tuple(occurrences),
                                      applies=applies, condition=condition))
    return breakages


# --- the report ----------------------------------------------------------------------------------

#: The lines of evidence printed per breakage (all of them stay in ``Breakage.occurrences``).
_SHOWN = 6


@dataclass
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes:
        module: the module's name.
        source: the file that was read (None when no source was found).
        reachable: True when ``patch()`` can reach the module.
        problems: why ``patch()`` cannot reach it (import error, missing function, signature).
        breakages: the known breakages its source shows, applying here or not.
        roi_problems: why ``patch()`` with ``OHEM_ROI`` on could not reach it (empty: it can;
            None: not checked, the module did not import).
        environment: what was installed when it was checked.
    """

    module: str
    source: str | None
    reachable: bool
    problems: list[str] = field(default_factory=list)
    breakages: list[Breakage] = field(default_factory=list)
    roi_problems: list[str] | None = None
    environment: Environment | None = None

    @property
    def ok(self) -> bool:
        """True when ``patch()`` can reach the module and no known breakage applies here."""
        return self.reachable and not any(b.applies for b in self.breakages)

    def __str__(self) -> str:
        lines = [f"module {self.module}" + (f" ({self.source})" if self.source else "")]
        if self.environment is not None:
            lines.append(f"environment: {self.environment}")
        if self.reachable:
            lines.append("patch(): can reach rpn_class_loss_graph and build_rpn_targets")
        else:
            lines.append("patch(): cannot reach this module")
            lines += [f"  - {problem}" for problem in self.problems]
        if self.roi_problems:
            lines.append("patch() with OHEM_ROI: cannot reach this module")
            lines += [f"  - {problem}" for problem in self.roi_problems]
        if not self.breakages:
            lines.append("known breakages: none found")
        elif not any(b.applies for b in self.breakages):
            lines.append(f"known breakages here: none ({len(self.breakages)} would break elsewhere, below)")
        for b in sorted(self.breakages, key=lambda b: not b.applies):
            head = "known breakage" if b.applies else "would break elsewhere"
            lines.append(f"{head} {b.key}: {b.symptom}")
            if b.condition:
                lines.append(f"  {'breaks with' if b.applies else 'only with'}: {b.condition}")
            shown = b.occurrences or ((Occurrence("", b.line, b.evidence),) if b.line else ())
            for o in shown[:_SHOWN]:
                lines.append(f"  {Path(o.file).name + ' ' if o.file else ''}line {o.line}: {o.text}")
            if len(shown) > _SHOWN:
                lines.append(f"  ... and {len(shown) - _SHOWN} more line(s)")
            lines.append(f"  fix: {b.fix}")
        return "\n".join(lines)


# --- finding and importing the module ------------------------------------------------------------

def _source_path(module: ModuleType | str) -> str | None:
    if isinstance(module, ModuleType):
        return getattr(module, "__file__", None)
    if module.endswith(".py"):
        return module
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin not in (None, "built-in", "frozen") else None


def _dotted_name(path: Path) -> tuple[str, Path]:
    """``a/b/mrcnn/model.py`` -> ("mrcnn.model", a/b) when ``mrcnn`` holds an ``__init__.py``:
    the module's dotted name and the folder that must be on ``sys.path`` to import it."""
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def _import(module: str) -> ModuleType:
    """Import a dotted name, or a file as its package's module with the package's parent on
    ``sys.path`` (left there, as the fork's own imports, such as ``from mrcnn import utils``,
    need it when they run)."""
    if not module.endswith(".py"):
        return importlib.import_module(module)
    path = Path(module).resolve()
    if not path.is_file():
        raise ImportError(f"no such file: {module}")
    name, root = _dotted_name(path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if name in sys.modules and Path(getattr(sys.modules[name], "__file__", "") or "").resolve() != path:
        # Another file is imported under that name: read this one beside it, under a name of its own.
        spec = importlib.util.spec_from_file_location(f"_diagnosed_{name}", path)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return loaded
    return importlib.import_module(name)


def _package_files(source_path: str) -> dict[str, str]:
    """The model module's source, then its package's ``utils.py`` and ``config.py`` when they exist."""
    files = {}
    model = Path(source_path)
    for path in (model, model.with_name("utils.py"), model.with_name("config.py")):
        if path.is_file() and str(path) not in files:
            files[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return files


def diagnose(module: ModuleType | str) -> Diagnosis:
    """Report whether :func:`mrcnn_ohem.patch` can reach ``module`` and which known breakage it shows.

    Args:
        module: the model module, its dotted name (``"mrcnn.model"``) or the path of its file.
            A name or path is imported (a module that fails to import is still read); a path
            is imported as its package's module (``path/to/mrcnn/model.py`` as ``mrcnn.model``,
            with ``path/to`` put on ``sys.path``).

    Returns:
        A :class:`Diagnosis`; ``str()`` of it is the report.
    """
    name = module.__name__ if isinstance(module, ModuleType) else str(module)
    source_path = _source_path(module)
    problems: list[str] = []
    loaded: ModuleType | None = module if isinstance(module, ModuleType) else None
    if loaded is None:
        try:
            loaded = _import(name)
        except Exception as err:  # noqa: BLE001 - any import failure is the finding
            problems.append(f"import failed: {type(err).__name__}: {err}")
        else:
            name = loaded.__name__
    roi_problems: list[str] = []
    if loaded is not None:
        problems += _patch_problems(loaded, roi=False)
        roi_problems = _patch_problems(loaded, roi=True)
    environment = Environment.current()
    files = _package_files(source_path) if source_path and Path(source_path).is_file() else {}
    return Diagnosis(module=name, source=source_path, reachable=not problems, problems=problems,
                     breakages=find_breakages(files, environment, loaded) if files else [],
                     roi_problems=roi_problems if loaded is not None else None, environment=environment)


def _patch_problems(module: ModuleType, *, roi: bool) -> list[str]:
    """What ``patch()``'s own checks (:mod:`mrcnn_ohem.patching`) say about ``module``: the RPN
    targets (``roi=False``), or the extra names that ``OHEM_ROI`` patches (``roi=True``)."""
    from mrcnn_ohem import patching

    functions = patching._ROI_TARGETS if roi else patching._RPN_TARGETS
    checks = [(patching._check_target, (target, arity)) for target, arity in functions.items()]
    checks += [(patching._check_layer, (layer,)) for layer in (patching._ROI_LAYERS if roi else ())]
    problems = []
    for check, arguments in checks:
        try:
            check(module, *arguments)
        except (AttributeError, TypeError) as err:
            problems.append(f"{type(err).__name__}: {err}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mrcnn_ohem.diagnosis MODULE...``: print each report; 0 when all are fine.

    Args:
        argv: the command-line arguments (``sys.argv[1:]`` when None): one or more dotted
            module names or paths to ``model.py``, and ``-v``/``--verbose`` to show
            TensorFlow's C++ log lines.

    Returns:
        The exit status: 0 when every module's report is fine, else 1.
    """
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn_ohem.diagnosis",
        description="Check a Matterport-style model module (e.g. mrcnn.model of a fork) for "
                    "mrcnn_ohem.patch() and for the known breakages of TF2 forks on today's "
                    "TensorFlow, NumPy, scikit-image and Python.")
    parser.add_argument("modules", nargs="+", metavar="MODULE",
                        help="dotted module name, or path to model.py (imported as its package's module)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    args = parser.parse_args(argv)
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow(args.verbose)
    reports = [diagnose(m) for m in args.modules]
    print("\n\n".join(str(r) for r in reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())

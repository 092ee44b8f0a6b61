"""Check a user's Matterport-style model module (``mrcnn.model`` of a fork) before patching it.

``diagnose(module)`` answers two questions about a fork:

1. Can :func:`mrcnn_ohem.patch` reach it? The module must import, and define
   ``rpn_class_loss_graph`` and ``build_rpn_targets`` with Matterport's signatures; the check is
   :mod:`mrcnn_ohem.patching`'s own, so the answer is exactly what ``patch()`` would say.
2. Does it show one of the three breakages seen on public TF2 forks under TensorFlow 2.16+ and
   tf-keras, which fail before OHEM is involved? Found by reading the module's source:

   - ``sgd-get-updates``: eager execution disabled and ``keras.optimizers.SGD`` built, which
     fails with ``'SGD' object has no attribute 'get_updates'``. Fix: ``keras.optimizers.legacy.SGD``.
   - ``keras-engine``: ``keras.engine`` imported (TF 2.0-2.2 / Keras 2.3 code), which fails with
     ``No module named 'keras.engine'``. Fix: import Keras 2 from ``tf_keras`` (``KE =
     tf_keras.layers``, ``tf_keras.layers.Layer``), or set ``TF_USE_LEGACY_KERAS=1`` before
     TensorFlow is imported and use ``tf.keras``.
   - ``multiprocessing-workers``: ``use_multiprocessing=True`` in ``fit``, whose data-loader worker
     processes hang at exit. Fix: ``use_multiprocessing=False`` (and ``workers=1``).

Command line: ``python -m mrcnn_ohem.diagnose mrcnn.model`` (or a path to ``model.py``) prints
the report; exit code 0 when ``patch()`` can reach the module and no breakage shows, else 1.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

__all__ = ["diagnose", "Diagnosis", "Breakage", "BREAKAGES", "main"]


@dataclass(frozen=True)
class Breakage:
    """One known breakage found in a module's source.

    Attributes:
        key: ``"sgd-get-updates"``, ``"keras-engine"`` or ``"multiprocessing-workers"``.
        line: 1-based line of the evidence in the source (0: not from a line).
        evidence: that line, stripped.
        symptom: the error users see.
        fix: what to change.
    """

    key: str
    line: int
    evidence: str
    symptom: str
    fix: str


@dataclass
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes:
        module: the module's name.
        source: the file that was read (None when no source was found).
        reachable: True when ``patch()`` can reach the module.
        problems: why ``patch()`` cannot reach it (import error, missing function, signature).
        breakages: the known breakages its source shows.
        roi_problems: why ``patch()`` with ``OHEM_ROI`` on could not reach it (empty: it can;
            None: not checked, the module did not import).
    """

    module: str
    source: str | None
    reachable: bool
    problems: list[str] = field(default_factory=list)
    breakages: list[Breakage] = field(default_factory=list)
    roi_problems: list[str] | None = None

    @property
    def ok(self) -> bool:
        """True when ``patch()`` can reach the module and no known breakage shows."""
        return self.reachable and not self.breakages

    def __str__(self) -> str:
        lines = [f"module {self.module}" + (f" ({self.source})" if self.source else "")]
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
        for b in self.breakages:
            lines.append(f"known breakage {b.key}: {b.symptom}")
            if b.line:
                lines.append(f"  line {b.line}: {b.evidence}")
            lines.append(f"  fix: {b.fix}")
        return "\n".join(lines)


#: key -> (symptom, fix) of the breakages :func:`diagnose` looks for.
BREAKAGES = {
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
}

_KERAS_ENGINE = re.compile(r"^\s*(from\s+(tensorflow\.(python\.)?)?keras\.engine\b|"
                           r"import\s+(tensorflow\.(python\.)?)?keras\.engine\b)|keras\.engine\.\w+")
_DISABLE_EAGER = re.compile(r"disable_eager_execution\s*\(|disable_v2_behavior\s*\(")
_NEW_SGD = re.compile(r"optimizers\.SGD\s*\(")
_MULTIPROCESSING = re.compile(r"use_multiprocessing\s*=\s*True")


def _first(pattern: re.Pattern, lines: Sequence[str]) -> tuple[int, str] | None:
    for number, text in enumerate(lines, start=1):
        code = text.split("#", 1)[0]
        if pattern.search(code):
            return number, text.strip()
    return None


def _breakage(key: str, hit: tuple[int, str]) -> Breakage:
    symptom, fix = BREAKAGES[key]
    return Breakage(key, hit[0], hit[1], symptom, fix)


def find_breakages(source: str) -> list[Breakage]:
    """The known breakages (:data:`BREAKAGES`) that ``source``, a model module's text, shows."""
    lines = source.splitlines()
    found = []
    hit = _first(_NEW_SGD, lines)
    if hit and _first(_DISABLE_EAGER, lines):
        found.append(_breakage("sgd-get-updates", hit))
    hit = _first(_KERAS_ENGINE, lines)
    if hit:
        found.append(_breakage("keras-engine", hit))
    hit = _first(_MULTIPROCESSING, lines)
    if hit:
        found.append(_breakage("multiprocessing-workers", hit))
    return found


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


def _import(module: str) -> ModuleType:
    if not module.endswith(".py"):
        return importlib.import_module(module)
    path = Path(module)
    spec = importlib.util.spec_from_file_location(f"_diagnosed_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {module}")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def diagnose(module: ModuleType | str) -> Diagnosis:
    """Report whether :func:`mrcnn_ohem.patch` can reach ``module`` and which known breakage it shows.

    Args:
        module: the model module, its dotted name (``"mrcnn.model"``) or the path of its file.
            A name or path is imported (a module that fails to import is still read).

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
    roi_problems: list[str] = []
    if loaded is not None:
        problems += _patch_problems(loaded, roi=False)
        roi_problems = _patch_problems(loaded, roi=True)
    source = None
    if source_path and Path(source_path).is_file():
        source = Path(source_path).read_text(encoding="utf-8", errors="replace")
    return Diagnosis(module=name, source=source_path, reachable=not problems, problems=problems,
                     breakages=find_breakages(source) if source is not None else [],
                     roi_problems=roi_problems if loaded is not None else None)


def _patch_problems(module: ModuleType, *, roi: bool) -> list[str]:
    """What ``patch()``'s own checks (:mod:`mrcnn_ohem.patching`) say about ``module``: the RPN
    targets (``roi=False``), or the extra names that ``OHEM_ROI`` patches (``roi=True``)."""
    from mrcnn_ohem import patching

    if roi:
        functions = getattr(patching, "_ROI_TARGETS", {})
        layers = getattr(patching, "_ROI_LAYERS", ())
    else:  # the RPN table is _RPN_TARGETS once RoI OHEM exists, _TARGETS before
        functions = getattr(patching, "_RPN_TARGETS", None) or patching._TARGETS
        layers = ()
    checks = [(patching._check_target, (target, arity)) for target, arity in functions.items()]
    checks += [(patching._check_layer, (layer,)) for layer in layers]
    problems = []
    for check, arguments in checks:
        try:
            check(module, *arguments)
        except (AttributeError, TypeError) as err:
            problems.append(f"{type(err).__name__}: {err}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mrcnn_ohem.diagnose MODULE...``: print each report; 0 when all are fine."""
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn_ohem.diagnose",
        description="Check a Matterport-style model module (e.g. mrcnn.model of a fork) for "
                    "mrcnn_ohem.patch() and for the known TF 2.16+ breakages of TF2 forks.")
    parser.add_argument("modules", nargs="+", metavar="MODULE", help="dotted module name or path to model.py")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    args = parser.parse_args(argv)
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow(args.verbose)
    reports = [diagnose(m) for m in args.modules]
    print("\n\n".join(str(r) for r in reports))
    return 0 if all(r.ok for r in reports) else 1


class _CallableModule(ModuleType):
    """``import mrcnn_ohem.diagnose`` makes ``mrcnn_ohem.diagnose`` this module rather than the
    function of the same name; calling the module calls the function, so both spellings work."""

    def __call__(self, module: ModuleType | str) -> Diagnosis:
        return diagnose(module)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())

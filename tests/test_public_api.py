"""Every public name is exported, annotated (STYLE.md rule 4) and documented."""
import importlib.util
import inspect
import textwrap
from pathlib import Path

import pytest

import mrcnn_ohem


def test_all_names_exist():
    for name in mrcnn_ohem.__all__:
        assert hasattr(mrcnn_ohem, name), name


def _missing_annotations(function):
    signature = inspect.signature(function)
    missing = [
        p.name for p in signature.parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.annotation is p.empty
    ]
    if signature.return_annotation is inspect.Signature.empty and function.__name__ != "__init__":
        missing.append("return")
    return missing


def test_public_functions_are_annotated():
    problems = {}
    for name in mrcnn_ohem.__all__:
        obj = getattr(mrcnn_ohem, name)
        if inspect.isfunction(obj):
            missing = _missing_annotations(obj)
        elif inspect.isclass(obj) and "__init__" in vars(obj):
            missing = _missing_annotations(obj.__init__)
        else:
            continue
        if missing:
            problems[name] = missing
    assert not problems, f"public API without annotations: {problems}"


# ---- every public name has a docstring (make docs runs the same check before pdoc) -----------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docstring_check():
    """docs/check_docstrings.py, imported from its path (docs/ is not a package)."""
    path = REPO / "docs" / "check_docstrings.py"
    spec = importlib.util.spec_from_file_location("check_docstrings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring(docstring_check):
    modules = docstring_check.public_modules()
    # The walk reaches the subpackages and the bundled model, and leaves private modules out.
    assert {"mrcnn_ohem", "mrcnn_ohem.core.selection", "mrcnn_ohem.maskrcnn.model",
            "mrcnn_ohem.datasets.coco", "mrcnn_ohem.runner.commands"} <= set(modules)
    assert "mrcnn_ohem._compat" not in modules
    missing = docstring_check.missing_docstrings()
    assert not missing, f"public names without a docstring: {missing}"


def test_docstring_check_finds_what_is_undocumented(docstring_check, tmp_path, monkeypatch):
    # A throwaway package with one gap of each kind, and documented look-alikes that must pass.
    package = tmp_path / "undocumented_pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Package."""\n__all__ = ["listed"]\nfrom .part import listed\n')
    (package / "part.py").write_text(textwrap.dedent('''\
        """Part."""
        import dataclasses


        def listed():
            """Documented."""


        def bare(x):
            return x


        def _private(x):
            return x


        @dataclasses.dataclass
        class Record:
            value: int


        class Layer:
            """Documented class."""

            def call(self):
                return 1

            def get_config(self):
                """Documented method."""

            @property
            def size(self):
                return 0


        class Child(Layer):
            """Overrides inherit the documented method's docstring, as pdoc shows them."""

            def get_config(self):
                return {}
        '''))
    (package / "nodoc.py").write_text("def helper():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert docstring_check.missing_docstrings("undocumented_pkg") == [
        "undocumented_pkg.nodoc", "undocumented_pkg.nodoc.helper", "undocumented_pkg.part.Layer.call",
        "undocumented_pkg.part.Layer.size", "undocumented_pkg.part.Record", "undocumented_pkg.part.bare",
    ]


def test_every_public_argument_is_documented_outside_the_pending_files(docstring_check):
    gaps = [g for g in docstring_check.parameter_gaps() if g.path not in docstring_check.PENDING_FILES]
    assert not gaps, "\n".join(f"{g.path}:{g.line}: {g.name}: {g.problem}" for g in gaps)


def test_argument_check_finds_undocumented_arguments_and_shapes(docstring_check, tmp_path, monkeypatch):
    package = tmp_path / "argument_pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Package."""\n')
    (package / "part.py").write_text(textwrap.dedent('''\
        """Part."""
        import numpy as np


        def complete(x: np.ndarray, k: int) -> np.ndarray:
            """Documented.

            Args:
                x: [n, 4] boxes.
                k: how many.

            Returns:
                [k, 4] boxes.
            """
            return x[:k]


        def missing_arg(x, k):
            """Half documented.

            Args:
                x: the input.
            """
            return x


        def no_shape(x: np.ndarray) -> int:
            """Shape missing.

            Args:
                x: the boxes.
            """
            return len(x)
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    gaps = {(g.name, g.problem.split(":")[0]) for g in docstring_check.parameter_gaps("argument_pkg")}
    names = {name for name, _ in gaps}
    assert names == {"missing_arg", "no_shape"}, gaps
    problems = {g.name: g.problem for g in docstring_check.parameter_gaps("argument_pkg")}
    assert "k" in problems["missing_arg"] and "shape" in problems["no_shape"]

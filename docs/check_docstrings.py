"""Check that every public name of ``mrcnn_ohem`` has a docstring, then (optionally) build the API
reference with pdoc.

``make docs`` runs ``python docs/check_docstrings.py --build docs/api``: the check first, and the
reference only when it passes. ``tests/test_public_api.py`` runs the check alone.

What counts as public is what the reference shows:

- every module of the package (``pkgutil.walk_packages``) but the private ones (``_compat``),
  each of which needs a docstring;
- in a module with ``__all__``, the names it lists; in one without, the functions and classes
  it defines whose names do not start with ``_``;
- the public methods and properties a public class defines; a method may inherit its docstring
  from the method it overrides (pdoc shows that one), a class or function may not. A dataclass's
  generated ``Name(field, ...)`` line does not count as a docstring.

Constants are left out: pdoc shows their ``#:`` comments when they have them.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

PACKAGE = "mrcnn_ohem"


def public_modules(package: str = PACKAGE) -> list[str]:
    """Every public module of ``package`` (itself first), by dotted name.

    Modules whose name (or a parent's) starts with ``_`` are private and left out, as pdoc
    leaves them out; what they export publicly is shown where it is exported.
    """
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return [n for n in names if not any(part.startswith("_") for part in n.split("."))]


def _own_doc(obj: object) -> str:
    """The docstring written on ``obj`` itself (not inherited, not a dataclass's signature line)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = (doc or "").strip()
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # dataclasses write "Name(field: type, ...)" where no docstring was given
    return doc


def _public_names(module: ModuleType) -> Iterator[tuple[str, object]]:
    listed = getattr(module, "__all__", None)
    if listed is not None:
        for name in listed:
            yield name, getattr(module, name)
        return
    for name, obj in vars(module).items():
        if (not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == module.__name__):
            yield name, obj


def _undocumented_members(cls: type) -> Iterator[str]:
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod, property)):
            if not (inspect.getdoc(getattr(cls, name)) or "").strip():
                yield name


def missing_docstrings(package: str = PACKAGE) -> list[str]:
    """The dotted names of the public modules, functions, classes and methods without a docstring.

    Args:
        package: the package to walk.

    Returns:
        Sorted dotted names (``mrcnn_ohem.module.Class.method``); empty when all are documented.
    """
    missing = set()
    for module_name in public_modules(package):
        module = importlib.import_module(module_name)
        if not _own_doc(module):
            missing.add(module_name)
        for name, obj in _public_names(module):
            if inspect.ismodule(obj) or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # submodules are checked as modules; constants are left out (see above)
            if not _own_doc(obj):
                missing.add(f"{module_name}.{name}")
            if inspect.isclass(obj):
                missing.update(f"{module_name}.{name}.{member}" for member in _undocumented_members(obj))
    return sorted(missing)


def _pdoc_specs(modules: list[str]) -> list[str]:
    """The shortest list of module specs that makes pdoc render each of ``modules`` once.

    pdoc walks the submodules of a package it is given, except where the package's ``__all__``
    leaves them out (``mrcnn_ohem.__all__`` lists the lazily loaded names, not the modules), and
    warns when a spec adds a module a previous spec already added.
    """
    import pdoc.extract

    specs: list[str] = []
    covered: set[str] = set()
    for name in modules:
        if name not in covered:
            specs.append(name)
            covered.update(pdoc.extract.walk_specs([name]))
    return specs


def _bind_lazy_names(modules: list[str]) -> None:
    """Resolve each lazily exported name (PEP 562 ``__getattr__``) into its module's namespace.

    pdoc reads a module's ``__dict__`` and does not call its ``__getattr__``, so a name listed in
    ``__all__`` but loaded on first access would not resolve. This changes only the namespace of
    the process that renders the reference.
    """
    for name in modules:
        module = importlib.import_module(name)
        for exported in getattr(module, "__all__", ()):
            vars(module).setdefault(exported, getattr(module, exported))


#: Warnings of pdoc that only change how an annotation is printed (as written, unresolved):
#: a NamedTuple's generated ``__init__`` cannot see its module's imports under
#: ``from __future__ import annotations``. Printed, not fatal.
ANNOTATION_WARNING = "Error parsing type annotation"


def build(output: Path, package: str = PACKAGE) -> tuple[list[str], list[str]]:
    """Render the API reference of every public module into ``output`` with pdoc.

    Args:
        output: folder for the HTML (created; ``output/index.html`` is the entry page).
        package: the package to document.

    Returns:
        ``(problems, notes)``: the warnings pdoc raised while rendering, as text; ``notes`` are
        those about unresolvable annotations (see ``ANNOTATION_WARNING``), ``problems`` the rest.
    """
    import pdoc
    import pdoc.render

    modules = public_modules(package)
    _bind_lazy_names(modules)
    pdoc.render.configure(docformat="google", footer_text=f"{package} API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*_pdoc_specs(modules), output_directory=output)
    pdoc_dir = str(Path(pdoc.__file__).parent)
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught if w.filename.startswith(pdoc_dir)})
    notes = [m for m in messages if ANNOTATION_WARNING in m]
    return [m for m in messages if m not in notes], notes


def main(argv: list[str] | None = None) -> int:
    """Print the public names without a docstring (exit 1 if any); with ``--build``, render."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, metavar="DIR", help="then render the reference into DIR")
    args = parser.parse_args(argv)

    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()  # the bundled model's modules import TensorFlow: keep its start-up lines out
    missing = missing_docstrings()
    if missing:
        print(f"{len(missing)} public name(s) without a docstring:", *missing, sep="\n  ")
        return 1
    print(f"every public name of the {len(public_modules())} modules of {PACKAGE} has a docstring")
    if args.build is None:
        return 0
    problems, notes = build(args.build)
    if notes:
        print(f"pdoc could not resolve {len(notes)} annotation(s) (shown as written):", *notes, sep="\n  ")
    if problems:
        print(f"pdoc warned {len(problems)} time(s):", *problems, sep="\n  ")
        return 1
    print(f"API reference written to {args.build / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

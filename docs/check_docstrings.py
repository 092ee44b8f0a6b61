"""Check that every public name of ``mrcnn_ohem`` has a docstring that documents its arguments, then
(optionally) build the API reference with pdoc.

``make docs`` runs ``python docs/check_docstrings.py --build docs/api``: the checks first, and the
reference only when they pass; pdoc's warnings then fail it too. ``tests/test_public_api.py`` runs
the first check alone.

What counts as public is what the reference shows:

- every module of the package (``pkgutil.walk_packages``) but the private ones (``_compat``),
  each of which needs a docstring;
- in a module with ``__all__``, the names it lists; in one without, the functions and classes
  it defines whose names do not start with ``_``;
- the public methods and properties a public class defines; a method may inherit its docstring
  from the method it overrides (pdoc shows that one), a class or function may not. A dataclass's
  generated ``Name(field, ...)`` line does not count as a docstring.

Constants are left out: pdoc shows their ``#:`` comments when they have them.

The second check (:func:`parameter_gaps`) reads the docstrings those names show, in Google style:

- every parameter of a public function or method but ``self`` and ``cls`` (``*args`` and
  ``**kwargs`` included) has an entry in an ``Args:`` section (pdoc's aliases ``Arguments:``,
  ``Parameters:``, ``Params:`` and ``Keyword Args:`` count); a class's own ``__init__`` may be
  documented in the class docstring or in its own;
- a parameter annotated as an array (``np.ndarray``, ``tf.Tensor``, also inside ``list[...]``,
  ``... | None`` and the like) states its shape in its entry: a ``[...]`` such as
  ``[batch, num_anchors, 4]``, or the word "scalar";
- a function annotated to return an array has a ``Returns:`` (or ``Yields:``) section that
  states a shape the same way.

Functions without annotations (much of the bundled model, which keeps Matterport's signatures)
get the first rule only; their shapes are written by hand. Gaps are reported as
``path:line: Qualified.name: problem``, so that an editor or a terminal jumps to them.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

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


# ---- the arguments each docstring documents ---------------------------------------------------

#: Section headers pdoc's Google parser reads as the argument list (``pdoc.docstrings``).
ARGS_SECTIONS = ("Args", "Arguments", "Parameters", "Params", "Keyword Args", "Keyword Arguments")
#: Section headers that describe what a function returns or yields.
RETURNS_SECTIONS = ("Returns", "Return", "Yields")
#: An annotation that names one of these is an array whose shape the docstring must state.
ARRAY_ANNOTATION = re.compile(r"\b(ndarray|NDArray|ArrayLike|Tensor|TensorLike)\b")
#: A stated shape: ``[...]`` (``[batch, num_anchors, 4]``, ``[N]``) or the word "scalar".
STATED_SHAPE = re.compile(r"\[[^\]]*\]|\bscalar\b", re.IGNORECASE)

#: Source files another change is rewriting: their gaps are listed but do not fail the check.
#: Take a file off this list once its docstrings pass (the check says when that is).
PENDING_FILES: tuple[str, ...] = ()


def docstring_sections(doc: str) -> dict[str, str]:
    """The Google-style sections of a docstring, as pdoc finds them.

    A section is a line ``Name:`` at the docstring's left margin followed by indented (or empty)
    lines; its text ends at the next line back at the margin.

    Args:
        doc: the docstring, raw or cleaned (``inspect.cleandoc`` is applied).

    Returns:
        Section name (as written, e.g. ``"Args"``) -> its text, dedented; a name that appears
        twice keeps both texts, joined by a newline.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in inspect.cleandoc(doc).splitlines():
        header = re.fullmatch(r"([A-Z][A-Za-z ]+):\s*", line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif current is not None and (not line.strip() or line[:1].isspace()):
            current.append(line)
        else:
            current = None
    return {name: inspect.cleandoc("\n".join(lines)) for name, lines in sections.items()}


def documented_arguments(doc: str) -> dict[str, str]:
    """The arguments a docstring's ``Args:`` sections document.

    Each entry starts at the section's margin with ``name: description`` (``name (type):`` and
    ``first, second:`` also count); indented lines continue it.

    Args:
        doc: the docstring.

    Returns:
        Argument name without its ``*`` or ``**`` -> its description (continuation lines
        included); empty when the docstring has no ``Args:`` section.
    """
    entries: dict[str, str] = {}
    sections = docstring_sections(doc)
    for text in (sections[name] for name in ARGS_SECTIONS if name in sections):
        names: list[str] = []
        for line in text.splitlines():
            entry = re.match(r"(\S[^:]*):(.*)", line)
            if entry and not line[:1].isspace():
                names = [n.strip().lstrip("*") for n in re.sub(r"\(.*\)", "", entry.group(1)).split(",")]
                for name in names:
                    entries[name] = entry.group(2).strip()
            else:
                for name in names:
                    entries[name] = f"{entries[name]}\n{line.strip()}".strip()
    return entries


def _annotation_text(annotation: object) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def argument_problems(function: Callable, docs: list[str]) -> list[str]:
    """What the docstrings of ``function`` leave out of its arguments and array return value.

    Args:
        function: a function or method (``self`` and ``cls`` are not arguments to document).
        docs: the docstrings that document it: the one pdoc shows, and for an ``__init__`` also
            its class's.

    Returns:
        One sentence per problem; empty when the arguments (with the shapes of array arguments)
        and the shape of an array return value are all documented.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    documented: dict[str, str] = {}
    for doc in docs:
        documented.update(documented_arguments(doc))
    problems = []
    parameters = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
    undocumented = [p.name for p in parameters if not documented.get(p.name)]
    if undocumented:
        problems.append(f"Args: does not document {', '.join(undocumented)}")
    shapeless = [
        p.name for p in parameters
        if documented.get(p.name) and ARRAY_ANNOTATION.search(_annotation_text(p.annotation))
        and not STATED_SHAPE.search(documented[p.name])
    ]
    if shapeless:
        problems.append(f"Args: states no shape ([...] or 'scalar') for array argument(s) {', '.join(shapeless)}")
    if function.__name__ != "__init__" and ARRAY_ANNOTATION.search(_annotation_text(signature.return_annotation)):
        returns = [s.get(name, "") for s in map(docstring_sections, docs) for name in RETURNS_SECTIONS]
        if not any(STATED_SHAPE.search(text) for text in returns):
            problems.append("Returns: states no shape ([...] or 'scalar') for the array it returns")
    return problems


class Gap(NamedTuple):
    """One problem :func:`parameter_gaps` found, where an editor can jump to it.

    Attributes:
        path: the source file, relative to the folder that holds the package when it is inside.
        line: 1-based line of the ``def`` (or of its first decorator).
        name: qualified name in the file (``Class.method``).
        problem: what the docstring leaves out.
    """

    path: str
    line: int
    name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name}: {self.problem}"


def _function_and_docs(cls: type | None, name: str, member: object) -> tuple[Callable, list[str]] | None:
    """The function behind a public member and the docstrings that document it (None: skip)."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if not inspect.isfunction(member):
        return None  # properties take no arguments; other attributes are not functions
    function = inspect.unwrap(member)
    if cls is None:
        return function, [_own_doc(function)]
    if name == "__init__":
        if function.__code__.co_filename.startswith("<"):
            return None  # generated (dataclass, NamedTuple): the fields are documented as attributes
        return function, [_own_doc(cls), _own_doc(function)]
    return function, [inspect.getdoc(getattr(cls, name)) or ""]


def parameter_gaps(package: str = PACKAGE) -> list[Gap]:
    """The public functions and methods whose docstrings leave out arguments or shapes.

    The names checked are those :func:`missing_docstrings` checks, plus each public class's own
    ``__init__``; a name exported by several modules is checked once, where it is defined, and
    names defined outside ``package`` are not checked.

    Args:
        package: the package to walk.

    Returns:
        The gaps (see :func:`argument_problems` for the rules), sorted by file and line.
    """
    root = Path(importlib.import_module(package).__file__).resolve().parents[1]
    gaps: set[Gap] = set()
    seen: set[int] = set()

    def check(function: Callable, docs: list[str], qualname: str) -> None:
        if id(function) in seen:
            return
        seen.add(id(function))
        path = Path(inspect.getsourcefile(function) or function.__code__.co_filename).resolve()
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        for problem in argument_problems(function, docs):
            gaps.add(Gap(shown, function.__code__.co_firstlineno, qualname, problem))

    for module_name in public_modules(package):
        for name, obj in _public_names(importlib.import_module(module_name)):
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            defined_in = getattr(obj, "__module__", "") or ""
            if defined_in != package and not defined_in.startswith(f"{package}."):
                continue
            if inspect.isfunction(obj):
                found = _function_and_docs(None, name, obj)
                if found:
                    check(*found, obj.__qualname__)
                continue
            for member_name, member in vars(obj).items():
                if member_name.startswith("_") and member_name != "__init__":
                    continue
                found = _function_and_docs(obj, member_name, member)
                if found:
                    check(*found, f"{obj.__qualname__}.{member_name}")
    return sorted(gaps)


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


def build(output: Path, package: str = PACKAGE) -> list[str]:
    """Render the API reference of every public module into ``output`` with pdoc.

    Args:
        output: folder for the HTML (created; ``output/index.html`` is the entry page).
        package: the package to document.

    Returns:
        The warnings pdoc raised while rendering, as text, sorted; empty when there were none.
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
    return sorted({f"{w.category.__name__}: {w.message}" for w in caught if w.filename.startswith(pdoc_dir)})


def main(argv: list[str] | None = None) -> int:
    """Run the checks, then with ``--build`` render the reference; print what fails.

    Args:
        argv: the command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        The exit status: 0 when every check passed (and pdoc rendered without a warning), else 1.
        Gaps in :data:`PENDING_FILES` are printed but do not make it 1.
    """
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
    gaps = parameter_gaps()
    pending = [g for g in gaps if g.path in PENDING_FILES]
    failing = [g for g in gaps if g not in pending]
    if pending:
        print(f"{len(pending)} argument gap(s) in PENDING_FILES, not failing the check yet:", *pending, sep="\n  ")
    done = sorted(set(PENDING_FILES) - {g.path for g in pending})
    if done:
        print("no gaps left in (take them off PENDING_FILES):", *done, sep="\n  ")
    if failing:
        print(f"{len(failing)} argument gap(s):", *failing, sep="\n  ")
        return 1
    where = " outside PENDING_FILES" if pending else ""
    print(f"every argument{where} is documented, with the shape of every annotated array")
    if args.build is None:
        return 0
    problems = build(args.build)
    if problems:
        print(f"pdoc warned {len(problems)} time(s):", *problems, sep="\n  ")
        return 1
    print(f"API reference written to {args.build / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

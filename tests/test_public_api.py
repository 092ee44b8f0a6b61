"""Every public name is exported and annotated (STYLE.md rule 4)."""
import inspect

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

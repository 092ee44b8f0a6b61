"""The wheel a user installs: what it holds, its version, its licence and its console scripts.

The wheel is built from a copy of the checkout (everything but version control, virtualenvs,
build output and ignored run folders), so a stale ``build/`` of the checkout can neither leak
into it nor be written by the test; ``tests/``, ``samples/``, ``benchmarks/`` and
``notebooks/`` are in the copy, so the test sees whether they would sneak in. The console
scripts are resolved from the wheel's own ``entry_points.txt`` and run with ``--help`` on the
wheel's unpacked files (placed first on ``PYTHONPATH``), with the dependencies of the current
virtualenv: reinstalling TensorFlow in a fresh one would take minutes.
"""
from __future__ import annotations

import configparser
import email.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mrcnn_ohem

REPO = Path(__file__).resolve().parents[1]
# What a checkout holds beside the sources (run folders at the top, caches anywhere, the
# generated API reference): never part of a build.
TOP_LEVEL_OUTPUT = {".git", ".cache", "build", "dist", "logs", "data", "demo_output"}
CACHES = shutil.ignore_patterns(".venv*", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")


def _not_sources(directory: str, names: list[str]) -> set[str]:
    ignored = set(CACHES(directory, names))
    if Path(directory) == REPO:
        ignored |= TOP_LEVEL_OUTPUT & set(names)
    if Path(directory) == REPO / "docs":
        ignored.add("api")
    return ignored


CONSOLE_SCRIPTS = {
    "mrcnn-ohem-coco": "mrcnn_ohem.runner.commands:coco_main",
    "mrcnn-ohem-shapes": "mrcnn_ohem.runner.commands:shapes_main",
    "mrcnn-ohem-diagnose": "mrcnn_ohem.diagnosis:main",
}
LEFT_OUT = ("tests/", "samples/", "benchmarks/", "notebooks/", "docs/")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout, as ``pip wheel .`` builds it."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_not_sources)
    out = root / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def dist_info(wheel) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = {n.split("/")[0] for n in archive.namelist() if n.split("/")[0].endswith(".dist-info")}
    return name


def _read(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode("utf-8")


# ---- fast: one version ---------------------------------------------------------------------


def test_module_and_installed_distribution_report_one_version():
    # _version.py is the one place: setup.py parses it, so the installed metadata agrees.
    assert mrcnn_ohem.__version__ == "0.2.0.dev0"
    assert importlib.metadata.version("mrcnn-ohem") == mrcnn_ohem.__version__


def test_installed_console_scripts_point_at_the_package():
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")
                 if ep.name.startswith("mrcnn-ohem")}
    assert installed == CONSOLE_SCRIPTS
    # `make venv` installs the package editable; the scripts sit beside the venv's python.
    bin_dir = Path(sys.executable).parent
    for name in CONSOLE_SCRIPTS:
        assert (bin_dir / name).is_file(), f"{name} missing from {bin_dir}: rerun make venv"
    result = subprocess.run([str(bin_dir / "mrcnn-ohem-coco"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: mrcnn-ohem-coco "), result.stderr


# ---- slow: build the wheel (about 4 s) and run its scripts ---------------------------------


@pytest.mark.slow
def test_wheel_holds_the_library_and_nothing_else(wheel, dist_info):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "mrcnn_ohem").rglob("*.py")}
    missing = sources - set(names)
    assert not missing, f"library modules missing from the wheel: {sorted(missing)}"
    assert "mrcnn_ohem/maskrcnn/model.py" in names  # the bundled Mask R-CNN ships
    outside = [n for n in names if not n.startswith(("mrcnn_ohem/", f"{dist_info}/"))]
    assert not outside, f"files outside the package in the wheel: {outside}"
    assert not [n for n in names if n.startswith(LEFT_OUT) or "/tests/" in n or "__pycache__" in n]


@pytest.mark.slow
def test_wheel_metadata_version_licence_and_scripts(wheel, dist_info):
    metadata = email.parser.Parser().parsestr(_read(wheel, f"{dist_info}/METADATA"))
    assert metadata["Name"] == "mrcnn-ohem"
    assert metadata["Version"] == mrcnn_ohem.__version__
    assert wheel.name.startswith(f"mrcnn_ohem-{mrcnn_ohem.__version__}-")
    licences = [n for n in zipfile.ZipFile(wheel).namelist() if n.startswith(dist_info) and "LICENSE" in n]
    assert licences, "LICENSE missing from the wheel's .dist-info"
    text = _read(wheel, licences[0])
    assert "MIT License" in text and "the mrcnn_ohem authors" in text and "Matterport, Inc." in text
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_read(wheel, f"{dist_info}/entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == CONSOLE_SCRIPTS


@pytest.mark.slow
def test_wheel_console_scripts_print_their_help(wheel, dist_info, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    entry_points = configparser.ConfigParser()
    entry_points.read_string((site / dist_info / "entry_points.txt").read_text())
    # What an installer's generated script does: load the entry point, exit with its return value.
    runner = (
        "import sys, importlib.metadata as m, mrcnn_ohem\n"
        "assert mrcnn_ohem.__file__.startswith(sys.argv[1]), mrcnn_ohem.__file__\n"
        "main = m.EntryPoint(name=sys.argv[2], value=sys.argv[3], group='console_scripts').load()\n"
        "sys.argv = [sys.argv[2], '--help']\n"
        "sys.exit(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    for name, value in entry_points["console_scripts"].items():
        result = subprocess.run([sys.executable, "-c", runner, str(site), name, value],
                                capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert result.returncode == 0, f"{name} --help: {result.stderr}"
        assert result.stdout.startswith("usage: "), f"{name} --help printed: {result.stdout[:200]}"
        if name != "mrcnn-ohem-diagnose":  # diagnose names itself `python -m mrcnn_ohem.diagnosis`
            assert result.stdout.startswith(f"usage: {name} "), result.stdout[:200]
        assert "train" in result.stdout or "MODULE" in result.stdout

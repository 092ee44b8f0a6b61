"""Execute the walkthrough notebooks and store them with their outputs (``make notebooks``).

Run from the repo root: ``python -m notebooks.store [--smoke] [NAME ...]``. Each notebook runs top
to bottom in a fresh kernel of this interpreter (full mode by default: ``MRCNN_OHEM_SMOKE=0``),
in a temporary working folder, and is written back in place with its outputs (figures as PNG),
plus ``metadata["mrcnn_ohem"]``:

- ``source_sha256``: :func:`source_hash` of the cells as executed. ``tests/test_notebooks.py``
  recomputes it from the stored cells, so a cell edited after execution fails the suite until
  the notebook is stored again;
- ``mode`` (``full`` or ``smoke``), ``executed`` (UTC time), ``seconds``, ``package_sha256``
  (the ``mrcnn_ohem`` sources at execution time, for information: library edits do not force a
  re-execution, which costs minutes of CPU per notebook).

Stored notebooks must stay under :data:`MAX_BYTES`.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
REPO = NOTEBOOK_DIR.parent
MAX_BYTES = 2_000_000
KERNEL_NAME = "mrcnn-ohem-store"


def source_hash(notebook) -> str:
    """SHA-256 over every cell's type and source, in order (outputs and metadata excluded)."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        digest.update(cell.cell_type.encode())
        digest.update(b"\0")
        digest.update(cell.source.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def package_hash() -> str:
    """SHA-256 over the ``mrcnn_ohem`` Python sources (path and content, sorted by path)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "mrcnn_ohem").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set the environment variable ``name`` to ``value`` inside the block; its previous state after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _write_kernel_spec(root: Path) -> None:
    """Make ``root`` a Jupyter data folder with a kernel spec running this interpreter."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(path=root / "kernels" / KERNEL_NAME, overrides={
        "display_name": "mrcnn_ohem", "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]})


def store(path: Path, smoke: bool, timeout: int = 3600) -> dict:
    """Execute one notebook and write it back with outputs and the metadata above."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    os.environ["MRCNN_OHEM_SMOKE"] = "1" if smoke else "0"
    # TF_CPP_MIN_LOG_LEVEL stays unset: the notebooks' first cell calls quiet_tensorflow, which
    # keeps TensorFlow's start-up lines out of the stored outputs unless the user set the level.
    started = time.perf_counter()
    # The kernel inherits TMPDIR: the notebooks' own tempfile folders (tens of MB for 02 in full
    # mode) go with the work folder instead of staying behind in the system's temp folder.
    with tempfile.TemporaryDirectory(prefix="mrcnn_ohem_nb_") as work, _environ("TMPDIR", work):
        client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL_NAME, allow_errors=False,
                                         resources={"metadata": {"path": work}})
        client.execute()
    info = {"source_sha256": source_hash(notebook), "mode": "smoke" if smoke else "full",
            "executed": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(time.perf_counter() - started), "package_sha256": package_hash()}
    notebook.metadata["mrcnn_ohem"] = info
    nbformat.write(notebook, path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{path.name}: {size} bytes stored, more than {MAX_BYTES}; shrink its figures.")
    return dict(info, bytes=size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m notebooks.store", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--smoke", action="store_true", help="execute in smoke mode (MRCNN_OHEM_SMOKE=1)")
    args = parser.parse_args(argv)
    paths = [NOTEBOOK_DIR / n for n in args.names] if args.names else sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    # The kernel spec lives only as long as the run.
    with tempfile.TemporaryDirectory(prefix="mrcnn_ohem_jupyter_") as root, _environ("JUPYTER_PATH", root):
        _write_kernel_spec(Path(root))
        for path in paths:
            print(f"{path.name}: executing ({'smoke' if args.smoke else 'full'} mode) ...", flush=True)
            info = store(path, args.smoke)
            print(f"{path.name}: {info['seconds']} s, {info['bytes'] / 1e3:.0f} kB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's command-line flow runs as written (train, evaluate, predict on real COCO images).

The block between ``<!-- coco-flow -->`` markers is run line by line with the installed
``mrcnn-ohem-coco`` console script, in a fresh folder, with ``path/to/coco`` replaced by the 159
real COCO 2017 images in ``../shared/data/coco_mini``; nothing else is changed. Each command's
terminal output is checked for TensorFlow's C++ log lines and Python warnings (quiet by default).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco_mini"
#: A line of TensorFlow's C++ logging, as TF 2.21 ("I0000 00:00:1796156317.867348   10399
#: cudart_stub.cc:31] ...") or TF 2.16 ("2026-12-01 21:03:51.489516: I external/.../cudart_stub.cc:32]
#: ...") writes it, or of its start-up notices.
TF_CPP_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+\.(cc|h):\d+\]|"
                         r"^\d{4}-\d\d-\d\d [\d:.]+: [IWEF] \S+\.(cc|h):\d+\]|absl::InitializeLog|"
                         r"rebuild TensorFlow with the appropriate compiler flags|TF-TRT Warning", re.M)


def readme_block(marker: str) -> list[str]:
    """The commands of the fenced block between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)```\s*<!-- /{marker} -->", text, re.S)
    assert match, f"README.md has no <!-- {marker} --> block"
    return [line for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.slow
@pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"the real COCO images are not at {COCO_MINI} (../shared)")
def test_the_readme_coco_flow_runs_as_written(tmp_path):
    script = Path(sys.executable).with_name("mrcnn-ohem-coco")
    assert script.is_file(), f"{script} is missing: the console script is installed by `make venv`"
    commands = readme_block("coco-flow")
    assert [shlex.split(c)[:2] for c in commands] == [["mrcnn-ohem-coco", "train"], ["mrcnn-ohem-coco", "evaluate"],
                                                     ["mrcnn-ohem-coco", "predict"]]
    # A user's shell: neither conftest's TF_CPP_MIN_LOG_LEVEL nor the library's own marker.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MRCNN_OHEM_QUIET_TF")}
    printed = []
    for command in commands:
        argv = [str(script), *shlex.split(command.replace("path/to/coco", str(COCO_MINI)))[1:]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        output = result.stdout + result.stderr
        # Quiet by default: no TensorFlow C++ log line and no Python warning reaches the terminal.
        assert not TF_CPP_LINE.search(output), output[:3000]
        assert not re.search(r"^\S+:\d+: \w+Warning: ", output, re.M), output[:3000]
        printed.append(result.stdout)
    # stdout holds the run summary, the metrics table, and where the predictions went.
    assert printed[0].strip().startswith("coco_ohem: 2 steps"), printed[0]
    assert "bbox AP50" in printed[1] and "metrics written to" in printed[1], printed[1]
    (run,) = (tmp_path / "logs").glob("coco_ohem*")
    assert json.loads((run / "run.json").read_text())["run_options"]["image_size"] == 128
    (metrics,) = run.glob("metrics_val2017_*_5img.json")
    assert json.loads(metrics.read_text())["settings"]["classes"] == ["person"]
    assert (tmp_path / "predictions" / "000000000139.png").is_file()
    detections = json.loads((tmp_path / "predictions" / "detections.json").read_text())
    assert all(d["category_id"] == 1 and d["image_id"] == 139 for d in detections)


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(tmp_path):
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- quickstart -->\s*```python\n(.*?)```\s*<!-- /quickstart -->", text, re.S)
    assert match, "README.md has no <!-- quickstart --> block"
    script = tmp_path / "quickstart.py"
    script.write_text(match.group(1))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's shell (conftest sets it)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = dict(line.split(": ") for line in result.stdout.strip().splitlines())
    assert set(printed) == {"rpn_class_loss", "ohem_rpn_kept_positives", "ohem_rpn_kept_negatives",
                            "ohem_rpn_threshold"}, result.stdout
    values = {name: float(value) for name, value in printed.items()}
    assert values["ohem_rpn_kept_positives"] + values["ohem_rpn_kept_negatives"] == pytest.approx(64, abs=1e-3)
    assert values["ohem_rpn_kept_positives"] > 0 and values["ohem_rpn_threshold"] >= 0  # (printed to 3 places)
    assert "cuda" not in result.stderr.lower() and "cpu_feature_guard" not in result.stderr  # quiet by default


def test_the_readme_is_a_users_document_without_a_run_log():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 300
    # Dated runs (times of day, commit hashes) belong in docs/measurements.md and benchmarks/RESULTS.md.
    assert not re.findall(r"\b\d{1,2}:\d{2}(?::\d{2})? ?UTC\b", text)
    hashes = [word for word in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"[a-f]", word)
              and re.search(r"\d", word)]
    assert not hashes, hashes
    assert "docs/measurements.md" in text

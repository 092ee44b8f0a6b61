"""benchmarks/gpu.py: the GPU command refuses cleanly without a GPU, and its --quick CPU run works end to end."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from benchmarks import gpu

REPO = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_says_so_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu, "gpu_devices", lambda: [])  # as on this machine; also where a GPU exists
    output = tmp_path / "gpu.md"
    assert gpu.main(["--output", str(output)]) == gpu.NO_GPU == 2
    message = capsys.readouterr().err
    assert "TensorFlow sees no GPU" in message and "tensorflow[and-cuda]" in message and "--quick" in message
    assert not output.exists()


@pytest.mark.slow
def test_the_command_refuses_on_this_machine_when_it_has_no_gpu(monkeypatch, capsys):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: the command would run the full benchmark")
    # The command line as `python -m benchmarks.gpu` runs it (runpy: the module as __main__, its
    # argv, its sys.exit), in this process: the real device query, without a second TensorFlow start.
    monkeypatch.setattr(sys, "argv", [str(REPO / "benchmarks" / "gpu.py")])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delitem(sys.modules, "benchmarks.gpu")  # as in a new process (this file's import is put back)
    with pytest.raises(SystemExit) as done:
        runpy.run_module("benchmarks.gpu", run_name="__main__", alter_sys=True)
    output = capsys.readouterr()
    assert done.value.code == 2, output.err[-2000:]
    assert "TensorFlow sees no GPU" in output.err
    assert not output.out.strip()


@pytest.mark.slow
def test_quick_runs_every_measurement_on_the_cpu_and_writes_its_report(tmp_path, monkeypatch):
    # In this process (TensorFlow is loaded, the graph optimizer off as for every in-process model
    # test): 15 CPU s less than a subprocess; the command line itself runs in the test above. main()
    # sets CUDA_VISIBLE_DEVICES for --quick (too late for this process's TensorFlow, which finds no
    # GPU here: the test above checks that); monkeypatch puts the variable back afterwards.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    output = tmp_path / "quick.md"
    assert gpu.main(["--quick", "--variants", "ohem", "--steps", "1", "--rounds", "2", "--warmup", "1",
                     "--output", str(output)]) == 0
    report = output.read_text(encoding="utf-8")
    assert "**Device: CPU**" in report and "no GPU was used" in report
    for row in ("| baseline | float32 |", "| baseline | mixed_bfloat16 |", "| ohem | float32 |",
                "| ohem | mixed_bfloat16 |", "| plain | ", "| float32 | ", "| mixed_bfloat16 | "):
        assert row in report, row
    assert "| baseline | float32 | " in report and "1.000x" in report  # ratios against the same run's baseline
    assert "n/a (CPU)" in report  # no GPU memory figure is made up on the CPU
    assert not (REPO / "benchmarks" / "results" / "quick.md").exists()

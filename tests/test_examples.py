import os
import subprocess
import sys

import pytest

from tests.conftest import requires_tensorflow


@pytest.mark.slow
@requires_tensorflow()
def test_train_adrenal_example_runs():
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "examples/train_adrenal.py", "--epochs", "1"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    auroc = float(done.stdout.strip().splitlines()[-1].split(":")[1])
    assert 0.0 <= auroc <= 1.0


@pytest.mark.slow
@requires_tensorflow()
def test_the_docs_python_snippet_runs_as_written_and_quietly():
    text = open(os.path.join("docs", "python.md"), encoding="utf-8").read()
    start = text.index("# AdrenalMNIST3D (CT volumes")
    code = text[start:text.index("```", start)].replace("epochs=6", "epochs=1")  # one epoch keeps CI quick
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("test AUROC 0.")
    assert "cuInit" not in done.stderr and "oneDNN" not in done.stderr, done.stderr[-1500:]  # a quiet script

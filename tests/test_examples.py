import os
import subprocess
import sys

from tests.conftest import requires_tensorflow


@requires_tensorflow()
def test_train_adrenal_example_runs():
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "examples/train_adrenal.py", "--epochs", "1"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    auroc = float(done.stdout.strip().splitlines()[-1].split(":")[1])
    assert 0.0 <= auroc <= 1.0

import os

import pytest

from mims_tf.cli.demo import demo
from tests.conftest import requires_tensorflow


@pytest.mark.slow
@requires_tensorflow()
def test_demo_trains_compares_exports_and_explains(tmp_path, capsys):
    assert demo(str(tmp_path), epochs=2, verbose=0) == 0
    out = capsys.readouterr().out
    assert "results on the test split" in out and all(p in out for p in ("mims ", "mims_noresizing", "mi_pre"))
    assert "chosen on validation" in out and "not on the test split" in out
    best = out.split("best: ")[1].split(" ")[0]
    run = tmp_path / best
    for name in ("best.keras", "eval_test.csv", "roc_test.png"):
        assert (run / name).is_file()
    assert (run / "export" / "saved_models" / best / "1" / "saved_model.pb").is_file()
    assert (run / "export" / f"{best}.tflite").is_file()
    explained = [d for d in os.listdir(run / "explain")]
    assert len(explained) == 1 and (run / "explain" / explained[0] / "index.md").is_file()

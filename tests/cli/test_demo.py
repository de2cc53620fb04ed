import json
import os
import re

import numpy as np
import pytest

from mims_tf.cli.demo import _choice, _comparisons, _results, _showcase, demo
from tests.conftest import requires_tensorflow


@pytest.mark.slow
@requires_tensorflow()
def test_demo_trains_compares_exports_and_explains(tmp_path, capsys):
    # The demo's data with a smaller test split (the demo's own: 192 bags), so the test's runtime stays.
    assert demo(str(tmp_path), epochs=2, verbose=0, data={"splits": (("train", 128), ("val", 64), ("test", 96))}) == 0
    out = capsys.readouterr().out
    assert "results on the test split" in out and all(p in out for p in ("mims ", "mims_noresizing", "mi_pre"))
    assert "ECE before->after" in out and "sensitivity (95 % CI)" in out
    # every pair with its paired interval and a verdict
    number = r"[+-]\d\.\d{3}"
    pairs = re.findall(rf"^  (\S+) - (\S+): {number} \({number} to {number}\)  (not significant|significant)$", out,
                       re.M)
    assert {(a, b) for a, b, _ in pairs} == {("mims", "mims_noresizing"), ("mims", "mi_pre"),
                                             ("mims_noresizing", "mi_pre")}
    assert "chosen on validation loss" in out and "not on the test split" in out
    best = out.split("exported model: ")[1].split(" ")[0]
    losses = {p: json.loads((tmp_path / p / "state.json").read_text())["best_val_loss"]
              for p in ("mims", "mims_noresizing", "mi_pre")}
    assert best == min(losses, key=losses.get)  # the choice is the one the output says
    game = re.search(r"in (\d+) of (\d+) positive test bags: hit rate (\d\.\d{3})", out)
    data = np.load(tmp_path / "data" / "synthetic.npz")
    assert int(game.group(2)) == int(data["test_labels"].sum()) and int(game.group(1)) <= int(game.group(2))
    assert "test_lesions" in data and "test_masks" in data
    assert "a true positive, the median-scoring" in out or "a MISSED positive" in out
    run = tmp_path / best
    for name in ("best.keras", "eval_test.csv", "roc_test.png"):
        assert (run / name).is_file()
    assert (run / "export" / "saved_models" / best / "1" / "saved_model.pb").is_file()
    assert (run / "export" / f"{best}.tflite").is_file()
    explained = [d for d in os.listdir(run / "explain")]
    assert len(explained) == 1 and (run / "explain" / explained[0] / "index.md").is_file()
    shown = re.search(r"heatmaps of test volume test/(\d+)", out).group(1)
    assert explained[0] == f"synthetic_test_images_{shown}"


def _result(scores, labels, **metrics):
    return {"scores": np.asarray(scores, float), "labels": np.asarray(labels), "path": "run",
            "bag_ids": [f"test/{i}" for i in range(len(labels))], **metrics}


def test_the_showcased_bag_is_a_true_positive_or_said_to_be_missed():
    labels = [1, 1, 1, 1, 0, 0]
    k, bag, line = _showcase(_result([0.9, 0.2, 0.7, 0.8, 0.95, 0.1], labels), threshold=0.5)
    assert bag == "test/3" and k == 3 and line.startswith("a true positive, the median-scoring of 3: P 0.800")
    k, bag, line = _showcase(_result([0.3, 0.2, 0.1, 0.4, 0.95, 0.1], labels), threshold=0.5)
    assert bag == "test/3" and "MISSED positive" in line and "P 0.400 < threshold 0.500" in line


def test_the_model_is_chosen_on_validation_loss_and_saturation_is_said(capsys):
    summaries = {"a": {"best_val_auroc": 1.0, "best_val_loss": 0.50},
                 "b": {"best_val_auroc": 0.98, "best_val_loss": 0.40}}
    assert _choice(summaries, ["a", "b"]) == "b"  # the saturated AUROC of a does not win
    out = capsys.readouterr().out
    assert "chosen on validation loss" in out and "a saturated at 1.000" in out


def test_comparisons_say_not_significant_where_the_interval_covers_zero(capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    good = labels + rng.normal(0, 0.3, 120)
    results = {"good": _result(good, labels), "same": _result(good + rng.normal(0, 0.01, 120), labels),
               "noise": _result(rng.normal(0, 1, 120), labels)}
    _comparisons(results, ["good", "same", "noise"])
    out = capsys.readouterr().out
    assert re.search(r"good - same: [+-]0\.0\d\d \(.*\)  not significant", out)
    assert re.search(r"good - noise: \+0\.\d{3} \(\+.*\)  significant", out)
    assert "good beats noise" in out


def test_calibration_and_threshold_that_do_not_carry_over_are_said_plainly(capsys):
    row = dict(auroc=0.8, auroc_low=0.7, auroc_high=0.9, threshold=0.8, sensitivity=0.3, sensitivity_low=0.2,
               sensitivity_high=0.42, specificity=0.98, specificity_low=0.9, specificity_high=1.0, ece=0.22,
               ece_calibrated=0.305, brier=0.283, brier_calibrated=0.297, threshold_reliable=True,
               threshold_warning="")
    _results({"m": row, "n": {**row, "ece_calibrated": 0.1, "brier_calibrated": 0.2, "sensitivity_high": 0.95}},
             {"m": {"val_sensitivity": 0.9}, "n": {"val_sensitivity": 0.9}})
    out = capsys.readouterr().out
    assert "0.220 -> 0.305" in out and "0.283 -> 0.297" in out
    assert "m: the calibration fitted on validation made the test probabilities worse" in out
    assert "n: the calibration" not in out
    assert "m: sensitivity 0.300 on the test split against 0.900 on validation" in out
    assert "n: sensitivity" not in out
    assert "0.300 (0.200 to 0.420)" in out

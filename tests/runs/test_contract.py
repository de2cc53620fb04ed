"""A run knows what it was trained on (its input contract) and says so when given something else."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from mims_tf.cli.main import main
from mims_tf.runs.contract import run_contract
from mims_tf.runs.evaluate import evaluate_run
from mims_tf.runs.predict import predict
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


@pytest.fixture
def strangers(tmp_path):
    """Inputs unlike the tiny run's training bags (16 grey 64 x 64 slices from an .npz)."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ct.npy", rng.integers(0, 255, (28, 64, 64)).astype(np.uint8))
    Image.fromarray(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)).save(tmp_path / "tile.png")
    folder = tmp_path / "slides"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64)).astype(np.uint8)).save(folder / f"{index}.png")
    return tmp_path


def test_training_records_the_contract_and_its_own_test_bags_are_inside(trained_run_copy):
    contract = run_contract(trained_run_copy)
    assert contract.data["instances"] == [16, 16] and contract.data["channels"] == [1]
    result = evaluate_run(trained_run_copy, n_resamples=0)
    assert result["bags_outside_contract"] <= 1  # in domain: at most a stray bag of 32 is flagged
    header = open(os.path.join(trained_run_copy, "eval_test.csv")).readline().strip().split(",")
    assert header[-1] == "input_check"


def test_bags_unlike_the_training_bags_are_named_in_a_column_and_a_line(trained_run, strangers, caplog):
    scan = os.path.join(trained_run, "data", "synthetic.npz") + "#test_images/0"
    with caplog.at_level("WARNING", logger="mims_tf"):
        results = predict(trained_run, [scan, str(strangers / "ct.npy"), str(strangers / "tile.png")])
    checks = {os.path.basename(r["bag"]): r["input_check"] for r in results}
    assert checks["0"] == ""  # the run's own kind of bag passes
    assert "28 instances (trained on 16)" in checks["ct.npy"]
    assert "3 channels (trained on 1)" in checks["tile.png"] and "1 instance (trained on 16)" in checks["tile.png"]
    lines = [r.getMessage() for r in caplog.records if "unlike the bags the model was trained on" in r.getMessage()]
    assert len(lines) == 2 and any(line.startswith(str(strangers / "ct.npy")) for line in lines)


def test_strict_refuses_a_bag_outside_the_contract(trained_run, strangers, capsys):
    assert main(["predict", trained_run, str(strangers / "ct.npy"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "ct.npy: outside the model's input contract: " in err[-1] and "28 instances" in err[-1]


def test_a_folder_is_never_guessed_for_a_model_of_single_images(trained_run_copy, strangers, capsys):
    path = os.path.join(trained_run_copy, "input_contract.json")
    contract = json.load(open(path))
    contract["instances"] = [1, 1]  # as if trained on single images
    json.dump(contract, open(path, "w"))
    folder = str(strangers / "slides")
    with pytest.raises(ValueError, match="a folder of 3 files, but the model was trained on bags of one image"):
        predict(trained_run_copy, [folder])
    assert len(predict(trained_run_copy, [folder], each=True)) == 3
    assert len(predict(trained_run_copy, [folder], each=False)) == 1
    assert main(["predict", trained_run_copy, folder, "--each"]) == 0
    captured = capsys.readouterr()
    assert "3 bag(s) formed from 3 file(s)" in captured.err and len(captured.out.strip().splitlines()) == 4


def test_an_exported_client_gets_the_same_check(trained_run, strangers, tmp_path):
    from mims_tf.data import read_volume
    from mims_tf.export.serving import check_input, read_metadata
    from mims_tf.runs.export import export_run

    lite = export_run(trained_run, "tflite", out=str(tmp_path / "lite"))["path"]
    metadata = read_metadata(os.path.splitext(lite)[0] + ".json")
    assert metadata["input_contract"] == run_contract(trained_run).to_dict()
    volume = read_volume(str(strangers / "ct.npy")).array
    expected = predict(trained_run, [str(strangers / "ct.npy")])[0]["input_check"]
    assert "; ".join(check_input(volume, metadata, ".npy")) == expected


def test_explain_names_each_tile_of_a_folder_by_its_file(trained_run, tmp_path):
    from mims_tf.runs.explain import explain_file

    folder = tmp_path / "patient"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64)).astype(np.uint8)).save(folder / f"tile_{index:03d}.png")
    out, written, _ = explain_file(trained_run, str(folder), out=str(tmp_path / "explain"), slices=2,
                                   method="gradient_x_input")
    index = open(os.path.join(out, "index.md")).read()
    assert all(f"tile_{s:03d}.png" in index for s, _, _ in written)

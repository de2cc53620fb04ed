import json
import os
import re

import pytest

from mims_tf.cli.main import main
from tests.conftest import SHARED, requires_tensorflow

pytestmark = requires_tensorflow()
MOBILENET_H5 = os.path.join(SHARED, "weights", "mobilenet_2_5_224_tf_no_top.h5")
FAST = ["--epochs", "1", "--image-size", "32", "--instances", "4"]


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    assert re.search(re.escape(message), err[0]), err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "mimz"], "Unknown preset 'mimz'. Did you mean 'mims'?"),
        (["--backbone", "resnet5"], "Unknown backbone 'resnet5'. Did you mean"),
        (["--backbone", "resnet50", "--image-size", "16"], "Cannot build backbone ResNet50"),
        (["--k", "500", "--instances", "2"], "k=500 is larger than what a bag of 2 instance(s) gives"),
        (["--weights", "/nonexistent/weights.h5"], "Weights file not found: /nonexistent/weights.h5"),
        (["--backbone", "resnet34", "--weights", MOBILENET_H5], "does not fit backbone resnet34"),
    ],
)
def test_train_bad_options_are_one_line_errors(tmp_path, capsys, extra, message):
    argv = ["train", "--data", "synthetic", "--out", str(tmp_path / "run"), "--epochs", "1", "--image-size", "32",
            "--instances", "4"]
    _fails(capsys, argv + extra, message)


def test_unknown_config_key_names_the_nearest(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lerning_rate: 0.01\n")
    _fails(capsys, ["train", "--config", str(tmp_path / "c.yaml")],
           "unknown config key 'lerning_rate'. Did you mean 'learning_rate'?")


def test_manifest_with_an_empty_split(tmp_path, capsys):
    import numpy as np

    for i in range(4):
        np.save(tmp_path / f"v{i}.npy", np.zeros((3, 8, 8), np.float32))
    rows = "".join(f"v{i}.npy,{i % 2},b{i},train\n" for i in range(4))
    (tmp_path / "m.csv").write_text("path,label,bag,split\n" + rows)
    _fails(capsys, ["train", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r")] + FAST,
           "split 'val' is empty (train: 4)")


def test_an_output_folder_holding_another_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("data: synthetic\n")
    _fails(capsys, ["train", "--data", "synthetic", "--out", str(out)] + FAST,
           "holds another run (config.yaml); resume it or overwrite it")
    _fails(capsys, ["train", "--out", str(tmp_path / "none"), "--resume"], "no run to resume")


def test_evaluate_and_predict_bad_input(tmp_path, capsys):
    _fails(capsys, ["evaluate", str(tmp_path)], "not a run folder (no config.yaml)")
    _fails(capsys, ["predict", str(tmp_path), "x.nii"], "not a run folder")


def test_help_of_every_subcommand_has_examples(capsys):
    from mims_tf.cli.main import COMMANDS

    for command in ("train", "evaluate", "predict", "demo", "export", "explain", "bench", "analyze"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "example" in capsys.readouterr().out
    for argv in (["--help"], ["-h"], ["presets", "--help"]):  # the top level lists every command's help line
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS) and "over 400 lines" not in out


@pytest.mark.slow
def test_train_samples_a_range_of_instances_per_step(tmp_path):
    """`--instances 2-3` (the paper's OCT 12-18, scaled down) trains and is kept in the run's config."""
    import yaml

    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--out", str(out), "--epochs", "1", "--image-size", "16",
                 "--instances", "2-3",
                 "--batch-size", "1", "--steps-per-epoch", "3"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"]["instances"] == [2, 3]


@pytest.fixture
def run_folder(trained_run):
    return trained_run  # the session's tiny run (tests/conftest.py), read only


@pytest.mark.slow
def test_export_formats_and_bad_input(run_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", run_folder]) == 0  # where TF Serving looks: saved_models/<the run's name>/<version>
    name = os.path.basename(os.path.normpath(run_folder))
    assert (tmp_path / "saved_models" / name / "1" / "saved_model.pb").is_file()
    metadata = json.loads((tmp_path / "saved_models" / name / "1" / "assets.extra" / "mims_tf.json").read_text())
    assert metadata["data"]["image_size"] == [32, 32] and metadata["classes"] == ["0", "1"]
    out = str(tmp_path / "exp")
    assert main(["export", run_folder, "--format", "saved_model", "--out", out, "--name", "adrenal"]) == 0
    assert os.path.isdir(os.path.join(out, "adrenal", "1"))
    assert main(["export", run_folder, "--format", "tflite", "--quantize", "float16", "--out", out]) == 0
    assert os.path.isfile(os.path.join(out, f"{name}_float16.tflite"))
    assert json.load(open(os.path.join(out, f"{name}_float16.json")))["positive_class"] == "1"
    assert main(["export", run_folder, "--format", "keras", "--out", out]) == 0
    capsys.readouterr()
    _fails(capsys,
           ["export", run_folder, "--format", "saved_model", "--out", out, "--name", "adrenal", "--version", "1"],
           "version 1 exists")
    empty = tmp_path / "norun"
    empty.mkdir()
    (empty / "config.yaml").write_text("data: synthetic\n")
    _fails(capsys, ["export", str(empty)], "no best.keras")
    with pytest.raises(SystemExit):
        main(["export", run_folder, "--format", "tflite", "--quantize", "int4"])


@pytest.mark.slow
def test_explain_and_its_bad_input(run_folder, tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "scan.npy", np.random.default_rng(0).uniform(0, 255, (6, 40, 40)).astype(np.float32))
    assert main(["explain", run_folder, str(tmp_path / "scan.npy"), "--out", str(tmp_path / "x"), "--slices", "2"]) == 0
    assert (tmp_path / "x" / "index.md").is_file()
    capsys.readouterr()
    inside = os.path.join(run_folder, "data", "synthetic.npz") + "#test_images/0"  # no input-contract warning
    _fails(capsys, ["explain", run_folder, inside, "--layer", "nope"], "no feature layer 'nope'; valid: backbone")
    _fails(capsys, ["explain", run_folder, inside, "--class", "7"], "class index 7 is out of range")
    np.save(tmp_path / "tiny.npy", np.zeros((1, 2, 2, 2, 2), np.float32))
    _fails(capsys, ["explain", run_folder, str(tmp_path / "tiny.npy")], "wrong dimensions")


def _progress_records(label, total):
    import logging

    return [logging.makeLogRecord({"msg": f"{label}: {done}/{total}, x", "levelno": logging.INFO,
                                   "progress": (label, done, total)}) for done in range(1, total + 1)]


def test_progress_is_a_bar_on_a_terminal_and_only_its_final_line_elsewhere():
    import io
    import logging

    from mims_tf.cli.main import ProgressHandler

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    plain, terminal = io.StringIO(), Terminal()
    for stream in (plain, terminal):
        handler = ProgressHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        for record in _progress_records("reading bags", 4):
            handler.emit(record)
        handler.emit(logging.makeLogRecord({"msg": "next line", "levelno": logging.INFO}))
    assert plain.getvalue() == "reading bags: 4/4, x\nnext line\n"
    drawn = terminal.getvalue()
    assert drawn.count("\r") == 4 and "[######.................." in drawn
    assert "[########################] 4/4, x" in drawn
    assert drawn.endswith("\nnext line\n") and drawn.count("\n") == 2


def test_train_without_data_names_it_instead_of_training_on_synthetic_data(tmp_path, capsys):
    _fails(capsys, ["train", "--out", str(tmp_path / "run"), "--epochs", "1"], "no data given: name it with --data")
    (tmp_path / "c.yaml").write_text("training: {epochs: 1}\n")
    _fails(capsys, ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")], "no data given")
    assert not (tmp_path / "run").exists()

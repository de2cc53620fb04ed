"""The run folder is a sealed record: one training or any number of readers, named decisions never replaced,
exports that say which model and decision they serve, damaged files named, paths that move with the folder."""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from mims_tf.cli.main import main
from mims_tf.runs.decision import decide_run, read_decisions, run_decision
from mims_tf.runs.evaluate import evaluate_run
from mims_tf.runs.export import check_export, export_run
from mims_tf.runs.folder import RunFolder
from mims_tf.utils import file_sha256
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


def _hold(run, mode):
    """A child process holding the run's lock (`"exclusive"`: as a training does; `"shared"`: as a reader), until
    its stdin closes."""
    code = textwrap.dedent(f"""
        import fcntl, sys
        handle = open({os.path.join(run, '.lock')!r}, "a")
        fcntl.flock(handle, fcntl.LOCK_{'EX' if mode == 'exclusive' else 'SH'})
        print("held", flush=True)
        sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _one_line(capsys, argv):
    status = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return status, err


def test_while_a_training_holds_the_run_every_reader_refuses_and_writes_nothing(trained_run_copy, capsys, tmp_path):
    run = trained_run_copy
    before = sorted(os.listdir(run))
    scan = os.path.join(run, "data", "synthetic.npz") + "#test_images/0"
    child = _hold(run, "exclusive")
    try:
        for argv in (["evaluate", run], ["predict", run, scan], ["explain", run, scan, "--out", str(tmp_path / "x")],
                     ["export", run, "--out", str(tmp_path / "saved")],
                     ["decide", run, "--sensitivity", "0.9", "--name", "s"]):
            status, err = _one_line(capsys, argv)
            assert status == 2 and len(err) == 1 and "a training is running in this run folder" in err[0], (argv, err)
    finally:
        child.communicate("")
    assert sorted(os.listdir(run)) == before and not os.path.exists(tmp_path / "saved")


def test_a_training_refuses_to_start_while_a_reader_holds_the_run(trained_run_copy, capsys):
    child = _hold(trained_run_copy, "shared")
    try:
        status, err = _one_line(capsys, ["train", "--out", trained_run_copy, "--resume", "--epochs", "3"])
    finally:
        child.communicate("")
    assert status == 2 and "another process is reading this run folder" in err[-1], err


def test_a_named_decision_never_replaces_the_runs_own_nor_itself(trained_run_copy, capsys):
    run = trained_run_copy
    own = read_decisions(run)["best"]
    screening = decide_run(run, "screening", "sensitivity", 0.9)
    assert read_decisions(run)["best"] == own  # the run's own decision stays
    assert screening["name"] == "screening" and screening["model_sha256"] == file_sha256(os.path.join(run,
                                                                                                     "best.keras"))
    with pytest.raises(ValueError, match="a decision named 'screening' exists for the best model"):
        decide_run(run, "screening", "sensitivity", 0.5)
    assert read_decisions(run, "screening")["best"] == screening
    result = evaluate_run(run, decision="screening", n_resamples=0)
    assert result["decision"] == "screening" and result["threshold"] == screening["threshold"]
    assert os.path.isfile(os.path.join(run, "eval_test_screening.json"))
    assert not os.path.exists(os.path.join(run, "eval_test.json"))  # the run's own files are not touched
    status, err = _one_line(capsys, ["evaluate", run, "--sensitivity", "0.95"])
    assert status == 2 and "mims decide" in err[0]


def test_a_decision_made_for_an_earlier_model_is_refused_or_made_again(trained_run_copy, caplog):
    run = trained_run_copy
    decide_run(run, "screening", "sensitivity", 0.9)
    evaluate_run(run, n_resamples=0)
    shutil.copy(os.path.join(run, "last.keras"), os.path.join(run, "best.keras"))  # another model, bytes differ
    assert file_sha256(os.path.join(run, "best.keras")) != read_decisions(run)["best"]["model_sha256"]
    with pytest.raises(ValueError, match="screening.json: made for an earlier best.keras"):
        run_decision(run, "best", "screening")
    with caplog.at_level("WARNING", logger="mims_tf"):
        own = run_decision(run, "best")  # the run's own follows its model: made again
    assert own["model_sha256"] == file_sha256(os.path.join(run, "best.keras"))
    assert any("made for an earlier best.keras" in r.getMessage() for r in caplog.records)


def test_saving_a_model_again_drops_the_outputs_made_from_its_predecessor(trained_run_copy):
    run = RunFolder(trained_run_copy)
    evaluate_run(run, n_resamples=0)
    evaluate_run(run, which="last", n_resamples=0)
    assert json.load(open(run.file("eval_test.json")))["model_sha256"] == file_sha256(run.model_path("best"))
    removed = run.forget_outputs("best")
    assert sorted(os.path.basename(p) for p in removed) == ["eval_test.csv", "eval_test.json", "reliability_test.png",
                                                            "roc_test.png"]
    assert os.path.isfile(run.file("eval_test_last.json"))  # the last model's evaluation still describes it


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(bias=0.3), r"'best' holds bias 0.3, not a list of one number per class \(Platt's beta 0.3 "
                                   r"is written \[0.0, 0.3\]\)"),
    (lambda d: d.update(temperature="1.2"), "'best' holds temperature '1.2', not a number > 0"),
    (lambda d: d.update(bias=[0.0, 0.1, 0.2]), "'best' holds a bias of 3 values, but best.keras gives 2 classes"),
    (lambda d: d.update(threshold=True), "'best' holds threshold True, not a number in"),
])
def test_a_damaged_decision_is_named_with_how_to_recover(trained_run_copy, capsys, change, message):
    path = os.path.join(trained_run_copy, "decision.json")
    stored = json.load(open(path))
    change(stored["best"])
    json.dump(stored, open(path, "w"))
    scan = os.path.join(trained_run_copy, "data", "synthetic.npz#test_images/0")
    for argv in (["evaluate", trained_run_copy], ["predict", trained_run_copy, scan]):
        status, err = _one_line(capsys, argv)
        assert status == 2 and len(err) == 1 and "decision.json" in err[0], err
        assert __import__("re").search(message, err[0]) and "delete it" in err[0], err[0]


def test_a_model_file_of_another_class_count_is_named(trained_run_copy, capsys):
    import keras

    from mims_tf.models import ModelConfig, build_model

    model = build_model(ModelConfig(backbone="tiny", weights=None, image_size=(32, 32), channels=3, classes=3))
    model.save(os.path.join(trained_run_copy, "best.keras"))
    keras.backend.clear_session()
    status, err = _one_line(capsys, ["evaluate", trained_run_copy])
    assert status == 2 and "best.keras: gives 3 classes, but the run's manifest.csv has 2" in err[0], err


def test_exports_are_named_after_the_run_never_overwritten_and_keep_their_signature(trained_run_copy, tmp_path):
    run = trained_run_copy
    base = str(tmp_path / "saved_models")
    first = export_run(run, out=base)
    assert first["path"] == os.path.join(base, "trained_run", "1") and first["metadata"]["run"] == "trained_run"
    with pytest.raises(ValueError, match="version 1 exists"):
        export_run(run, out=base, version=1)
    other = str(tmp_path / "other")  # the same run with other class names: another signature
    shutil.copytree(run, other)
    rows = list(csv.DictReader(open(os.path.join(other, "manifest.csv"))))
    for row in rows:
        row["label"] = {"0": "benign", "1": "malignant"}[row["label"]]
    with open(os.path.join(other, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.remove(os.path.join(other, "decision.json"))
    with pytest.raises(ValueError, match=r"version 1 serves another signature \(classes \['0', '1'\] there, "
                                         r"\['benign', 'malignant'\] here\)"):
        export_run(other, out=base, name="trained_run")
    assert sorted(os.listdir(os.path.join(base, "trained_run"))) == ["1"]
    assert export_run(other, out=base, name="trained_run", new_signature=True)["path"].endswith("2")


def test_check_export_says_when_an_export_is_stale_against_its_run(trained_run_copy, tmp_path, capsys):
    run = trained_run_copy
    lite = export_run(run, "tflite", out=str(tmp_path / "lite"))["path"]
    assert check_export(lite) == {"export": lite, "run": os.path.normpath(run), "current": True, "stale": []}
    path = os.path.join(run, "decision.json")
    stored = json.load(open(path))
    stored["best"]["threshold"] = 0.9  # the decision was changed (by hand)
    json.dump(stored, open(path, "w"))
    assert check_export(lite)["stale"] == ["the decision 'run' changed since the export"]
    shutil.copy(os.path.join(run, "last.keras"), os.path.join(run, "best.keras"))
    status = main(["export", "--check", lite])
    out = capsys.readouterr().out
    assert status == 1 and "stale" in out and "best.keras changed since the export" in out


def test_a_copied_run_folder_evaluates_to_the_same_numbers(trained_run_copy, tmp_path):
    run = trained_run_copy
    config = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert config["out"] == "." and not any(os.path.isabs(r["path"])
                                            for r in csv.DictReader(open(os.path.join(run, "manifest.csv"))))
    here = evaluate_run(run, n_resamples=0)
    moved = str(tmp_path / "elsewhere" / "deeper" / "run")
    shutil.move(run, moved)  # with its data (the synthetic set lives inside it): nothing left at the old place
    there = evaluate_run(moved, n_resamples=0)
    for key in ("auroc", "threshold", "sensitivity", "specificity", "ece_calibrated", "model_sha256", "bag_ids"):
        assert there[key] == here[key], key
    assert json.load(open(os.path.join(moved, "eval_test.json")))["run"] == "run"
    assert not any(str(tmp_path) in line for line in open(os.path.join(moved, "eval_test.json")))


def test_json_output_is_json_alone(trained_run_copy, capsys):
    assert main(["evaluate", trained_run_copy, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)["runs"][0]
    assert result["decision"] == "run" and 0 <= result["sensitivity_low"] <= result["sensitivity_high"] <= 1


def test_a_training_counts_epochs_from_one_and_prints_the_exact_auroc(trained_run_and_summary):
    run, summary = trained_run_and_summary
    assert [row["epoch"] for row in csv.DictReader(open(os.path.join(run, "log.csv")))] == ["1", "2"]
    decision = json.load(open(os.path.join(run, "decision.json")))["best"]
    assert summary["best_val_auroc_exact"] == decision["val_auroc"]


@pytest.mark.slow
def test_one_training_and_concurrent_readers_leave_a_consistent_run(tmp_path):
    """A training with evaluate / predict / explain / export processes started against it all along: each reader
    either refused in one line or worked on the final model; every export is complete and distinct."""
    import time

    run = str(tmp_path / "run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    mims = [sys.executable, "-m", "mims_tf.cli.main"]
    training = subprocess.Popen([*mims, "train", "--data", "synthetic", "--out", run, "--epochs", "4", "--batch-size",
                                 "8", "--image-size", "32", "--instances", "6", "--checkpoint-steps", "2"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    while not os.path.isfile(os.path.join(run, "best.keras")):
        time.sleep(0.5)
        assert training.poll() is None, training.stderr.read()
    scan = os.path.join(run, "data", "synthetic.npz") + "#test_images/0"
    saved = str(tmp_path / "saved_models")
    commands = [["evaluate", run], ["predict", run, scan], ["explain", run, scan, "--slices", "1"],
                ["export", run, "--out", saved]]
    readers = [subprocess.Popen([*mims, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=tmp_path) for command in commands]
    assert training.wait(timeout=600) == 0, training.stderr.read()
    for reader in readers:
        out, err = reader.communicate(timeout=600)
        lines = [line for line in err.splitlines() if line.strip()]
        assert reader.returncode == 0 or (reader.returncode == 2 and "a training is running" in lines[-1]), err
    after = [subprocess.Popen([*mims, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=tmp_path) for command in [*commands, *[["export", run, "--out", saved]] * 2]]
    for reader in after:
        assert reader.wait(timeout=600) == 0, reader.stderr.read()
    best = file_sha256(os.path.join(run, "best.keras"))
    evaluations = [n for n in os.listdir(run) if n.startswith("eval_") and n.endswith(".json")]
    assert evaluations and all(json.load(open(os.path.join(run, n)))["model_sha256"] == best for n in evaluations)
    assert json.load(open(os.path.join(run, "decision.json")))["best"]["model_sha256"] == best
    versions = sorted(os.listdir(os.path.join(saved, "run")), key=int)
    assert len(versions) >= 3 and len(set(versions)) == len(versions)
    for version in versions:
        metadata = json.load(open(os.path.join(saved, "run", version, "assets.extra", "mims_tf.json")))
        assert metadata["model_sha256"] == best  # every export serves the final model
        assert os.path.isfile(os.path.join(saved, "run", version, "saved_model.pb"))
    assert not any(os.path.islink(os.path.join(root, name)) for root, _, names in os.walk(run) for name in names)


@pytest.mark.slow
def test_train_json_prints_only_the_summary_on_stdout(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--data", "synthetic", "--out", out, "--epochs", "1", "--batch-size", "8", "--image-size",
                 "32", "--instances", "6", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # nothing but the JSON: `mims train --json | jq` works
    assert summary["epochs_done"] == 1 and summary["best_val_auroc_exact"] == summary["decision"]["val_auroc"]
    assert "epoch 1/1:" in captured.err and "on validation: sensitivity" in captured.err

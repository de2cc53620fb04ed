"""Bad command lines, configs and run folders: one line naming the argument or file and the cause, exit 2,
no traceback, nothing left behind that blocks the corrected command."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mims_tf.cli.main import main
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()
FAST = ["--epochs", "1", "--image-size", "16", "--instances", "2", "--batch-size", "8"]


def _one_line_error(capsys, argv, message):
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's own errors exit with 2
        status = exit_info.code
    assert status == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if line]
    assert len(lines) == 1, lines
    assert "Traceback" not in captured.err and lines[0].startswith("mims"), lines[0]
    assert message in lines[0], lines[0]
    return lines[0]


TRAIN_OPTIONS = [
    (["--learning-rate", "nan"], "Received: --learning-rate nan"),
    (["--learning-rate", "-0.1"], "Received: --learning-rate -0.1"),
    (["--learning-rate", "0"], "--learning-rate must be positive"),
    (["--learning-rate", "inf"], "Received: --learning-rate inf"),
    (["--learning-rate", "abc"], "argument --learning-rate: invalid float value: 'abc'"),
    (["--steps-per-epoch", "0"], "Received: --steps-per-epoch 0"),
    (["--steps-per-epoch", "-3"], "Received: --steps-per-epoch -3"),
    (["--epochs", "0"], "Received: --epochs 0"),
    (["--epochs", "-1"], "Received: --epochs -1"),
    (["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
    (["--batch-size", "0"], "Received: --batch-size 0"),
    (["--image-size", "2"], "Received: --image-size 2"),
    (["--image-size", "0"], "Received: --image-size 0"),
    (["--instances", "0"], "Received: --instances 0"),
    (["--instances", "-4"], "Received: --instances -4"),
    (["--instances", "18-12"], "(min, max) with min <= max, or None. Received: --instances 18-12"),
    (["--instances", "0-3"], "Received: --instances 0-3"),
    (["--instances", "many"],
     "argument --instances: expected a number of instances (8) or a range (12-18). Received: 'many'"),
    (["--central", "0"], "Received: --central 0"),
    (["--checkpoint-steps", "0"], "Received: --checkpoint-steps 0"),
    (["--seed", "-1"], "Received: --seed -1"),
    (["--seed", str(2**40)], f"Received: --seed {2**40}"),
    (["--image-size", "100000"], "Received: --image-size 100000"),
    (["--k", "0"], "Received: --k 0"),
    (["--threshold-rule", "sensitivity", "--threshold-target", "1.5"], "Received: --threshold-target 1.5"),
    (["--threshold-rule", "sensitivity", "--threshold-target", "0"], "Received: --threshold-target 0.0"),
    (["--threshold-rule", "sensitivity"], "the rule 'sensitivity' needs a target in (0, 1]"),
    (["--threshold-target", "0.9"], "the rule 'youden' takes no target"),
    (["--precision", "float8"], "argument --precision: invalid choice: 'float8'"),
    (["--strategy", "mirorred"], "argument --strategy: invalid choice: 'mirorred'"),
    (["--preset", "mimz"], "Unknown preset 'mimz'. Did you mean 'mims'?"),
    (["--backbone", "resnet5"], "Unknown backbone 'resnet5'. Did you mean"),
    (["--kernels", "retina"], "Unknown kernel setting 'retina'"),
    (["--epcohs", "3"], "unrecognized argument(s): --epcohs. Did you mean '--epochs'?"),
    (["--lr", "0.1"], "unrecognized argument(s): --lr. Did you mean '--learning-rate'?"),
    (["--data", "/nonexistent/set.npz"], "/nonexistent/set.npz: data not found"),
    (["--config", "/nonexistent.yaml"], "/nonexistent.yaml: config file not found"),
    (["--weights", "/nonexistent/weights.h5"], "Weights file not found: /nonexistent/weights.h5"),
    (["--k", "500"], "k=500 is larger than what a bag of 2 instance(s) gives"),
    (["--backbone", "resnet50", "--image-size", "16"], "Cannot build backbone ResNet50"),
]


@pytest.mark.parametrize("extra, message", TRAIN_OPTIONS, ids=[" ".join(e) for e, _ in TRAIN_OPTIONS])
def test_bad_train_options_and_nothing_left_behind(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    _one_line_error(capsys, ["train", "--data", "synthetic", "--out", str(out), *FAST, *extra], message)
    assert not out.exists() or [n for n in os.listdir(out) if n != ".lock"] == []  # the corrected command runs


def test_a_range_of_instances_larger_than_the_bags_is_refused_once_they_are_read(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--out", str(out), *FAST, "--instances", "2-500"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "Some bags have fewer than 500 instances, so bags sampled 2 to 500 a step cannot be batched: use " \
        "--batch-size 1 or replacement=True. Received: --batch-size 8" in err.strip().splitlines()[-1]


YAML_CONFIGS = [
    ("lerning_rate: 0.01\n", "unknown config key 'lerning_rate'. Did you mean 'learning_rate'?"),
    ("training: {epoch: 3}\n", "unknown config key training.'epoch'. Did you mean 'epochs'?"),
    ("data: 123\n", "`data` must be a mapping"),
    ("model: [mims]\n", "`model` must be a mapping"),
    ("- a\n- b\n", "a config file is a mapping"),
    ("training: {epochs: [\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
    ("model: {image_size: 32}\n", "`model.image_size` comes from the data"),
    ("model: {pooling: topK}\n", "Unknown pooling 'topK'. Did you mean 'topk'?"),
    ("data: {instances: [5, 2, 1]}\n", "Received: instances=(5, 2, 1)"),
    ("data: {classes: MSS}\n", "Received: classes='MSS'"),
    ("precision: 16\n", "Received: precision=16"),
    ("out: ''\n", "Received: out=''"),
    ("\ufefftraining: {epochs: 0}\n", "Received: epochs=0"),
    ("data: {normalize: [5, 5]}\n", "Received: normalize=[5, 5]"),
    ("data: {normalize: minmux}\n", "Received: normalize='minmux'"),
    ("data: {channels: 2}\n", "Received: channels=2"),
]


@pytest.mark.parametrize("text, message", YAML_CONFIGS, ids=[t[:20] for t, _ in YAML_CONFIGS])
def test_bad_config_files(tmp_path, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    line = _one_line_error(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "run")], message)
    assert "hacked" not in line and not (tmp_path / "run" / "config.yaml").exists()


def test_resume_and_overwrite_mistakes(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("data: synthetic\n")
    _one_line_error(capsys, ["train", "--data", "synthetic", "--out", str(out), *FAST],
                    "holds another run (config.yaml)")
    _one_line_error(capsys, ["train", "--out", str(tmp_path / "none"), "--resume"], "no run to resume")
    _one_line_error(capsys, ["train", "--out", str(out), "--resume", "--learning-rate", "0.1"],
                    "only --epochs may change. Received: --learning-rate")
    other = tmp_path / "busy"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    _one_line_error(capsys, ["train", "--data", "synthetic", "--out", str(other), *FAST], "folder is not empty")
    assert (other / "notes.txt").read_text() == "mine"


def test_overwrite_never_empties_a_folder_that_holds_no_run(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("path,label\nx.npy,0\n")
    _one_line_error(capsys, ["train", "--data", "synthetic", "--out", str(data), "--overwrite", *FAST],
                    "holds files but no run")
    assert sorted(os.listdir(data)) == [".lock", "manifest.csv"]
    assert (data / "manifest.csv").read_text().startswith("path,label")


def test_damaged_run_files_are_named(run_folder, tmp_path, capsys):
    import json
    import shutil

    def copy(name):
        target = tmp_path / name
        shutil.copytree(run_folder, target)
        return target

    garbled = copy("garbled_state")
    (garbled / "state.json").write_text('{"best_val_auroc": "high", "epochs_done": 1}')
    _one_line_error(capsys, ["train", "--out", str(garbled), "--resume", "--epochs", "2"],
                    "state.json: 'best_val_auroc' holds 'high', not int or float")
    (garbled / "state.json").write_text("{oops")
    _one_line_error(capsys, ["train", "--out", str(garbled), "--resume", "--epochs", "2"], "state.json: not valid JSON")
    bad_decision = copy("bad_decision")
    decision = json.loads((bad_decision / "decision.json").read_text())
    decision["best"]["threshold"] = float("nan")
    (bad_decision / "decision.json").write_text(json.dumps(decision))
    for command in (["evaluate", str(bad_decision)], ["export", str(bad_decision), "--out", str(tmp_path / "e")]):
        _one_line_error(capsys, command, "decision.json: 'best' holds threshold nan, not a number in [0, 1]")
    no_last = copy("no_last")
    os.remove(no_last / "last.keras")
    before = {name: (no_last / name).read_bytes() for name in os.listdir(no_last) if (no_last / name).is_file()}
    _one_line_error(capsys, ["train", "--out", str(no_last), "--resume", "--epochs", "2"], "last.keras: missing")
    after = {name: (no_last / name).read_bytes() for name in os.listdir(no_last) if (no_last / name).is_file()}
    assert after == before  # nothing written: not the config's epochs, not a session in environment.json


def test_a_single_image_given_to_a_model_of_volumes_is_scored_with_a_warning(run_folder, tmp_path, capsys):
    np.save(tmp_path / "image.npy", np.zeros((32, 32), np.float32))
    assert main(["predict", run_folder, str(tmp_path / "image.npy")]) == 0
    err = capsys.readouterr().err
    assert "image.npy: unlike the bags the model was trained on: " in err and "1 instance (trained on 16)" in err
    capsys.readouterr()
    np.save(tmp_path / "volume.npy", np.zeros((16, 32, 32), np.float32))
    assert main(["predict", run_folder, str(tmp_path / "volume.npy")]) == 0
    assert "instance (trained on" not in capsys.readouterr().err


@pytest.fixture
def run_folder(trained_run):
    return trained_run  # the session's tiny run (tests/conftest.py), read only: tests that break a run copy it


def _broken_copy(run_folder, tmp_path, name, content):
    import shutil

    copy = tmp_path / name
    shutil.copytree(run_folder, copy)
    (copy / "best.keras").write_bytes(content(open(os.path.join(run_folder, "best.keras"), "rb").read()))
    return str(copy)


def _unsafe_keras(data):
    """A .keras file whose config names a Lambda layer (arbitrary code): safe mode must refuse it."""
    import io
    import json
    import zipfile

    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as out:
        for item in source.namelist():
            content = source.read(item)
            if item == "config.json":
                config = json.loads(content)
                layer = {"module": "keras.layers", "class_name": "Lambda", "config": {
                    "name": "evil", "function": {"class_name": "__lambda__", "config": {
                        "code": "print('hacked')", "defaults": None, "closure": None}}}, "registered_name": None}
                config["config"]["layers"].append(layer)
                content = json.dumps(config).encode()
            out.writestr(item, content)
    return target.getvalue()


RUN_INPUTS = [
    ("truncated best.keras", lambda d: d[: len(d) // 2], "not a loadable Keras model file"),
    ("corrupted best.keras", lambda d: d[:200] + bytes(len(d) - 400) + d[-200:], "not a loadable Keras model file"),
    ("empty best.keras", lambda d: b"", "not a loadable Keras model file"),
    ("text best.keras", lambda d: b"not a model", "not a loadable Keras model file"),
    ("code in config", _unsafe_keras, "not a loadable Keras model file"),
]


@pytest.mark.parametrize("name, content, message", RUN_INPUTS, ids=[r[0] for r in RUN_INPUTS])
@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "explain"])
def test_broken_model_files(run_folder, tmp_path, capsys, name, content, message, command):
    broken = _broken_copy(run_folder, tmp_path, "broken", content)
    os.remove(os.path.join(broken, "decision.json"))
    np.save(tmp_path / "scan.npy", np.zeros((3, 32, 32), np.float32))
    argv = {"evaluate": ["evaluate", broken], "predict": ["predict", broken, str(tmp_path / "scan.npy")],
            "export": ["export", broken, "--out", str(tmp_path / "exp")],
            "explain": ["explain", broken, str(tmp_path / "scan.npy")]}[command]
    line = _one_line_error(capsys, argv, message)
    assert "best.keras" in line and "File not found" not in line and "hacked" not in capsys.readouterr().out


def test_evaluate_predict_explain_export_bad_arguments(run_folder, tmp_path, capsys):
    np.save(tmp_path / "scan.npy", np.random.default_rng(0).uniform(0, 255, (4, 32, 32)).astype(np.float32))
    scan = str(tmp_path / "scan.npy")
    inside = os.path.join(run_folder, "data", "synthetic.npz") + "#test_images/0"  # a bag like the training bags
    cases = [
        (["evaluate", str(tmp_path / "missing")], "run folder not found"),
        (["evaluate", str(tmp_path)], "not a run folder (no config.yaml)"),
        (["evaluate", run_folder, "--model", "worst"], "argument --model: invalid choice: 'worst'"),
        (["evaluate", run_folder, "--split", "tset"], "split 'tset'"),
        (["evaluate", run_folder, "--sensitivity", "0.9"], "make a named decision with mims decide"),
        (["decide", run_folder, "--sensitivity", "2", "--name", "x"], "Received: --sensitivity 2.0"),
        (["decide", run_folder, "--sensitivity", "0.9", "--name", "run"], "another name than 'run'"),
        (["decide", run_folder, "--sensitivity", "0.9", "--name", "../x"], "a plain name"),
        (["evaluate", run_folder, "--decision", "nothing"], "no decision named 'nothing'"),
        (["evaluate", run_folder, "--instances", "0"], "Received: --instances 0"),
        (["predict", run_folder], "give either input files or --manifest"),
        (["predict", run_folder, scan, "--manifest", scan], "give either input files or --manifest"),
        (["predict", run_folder, str(tmp_path / "nope.npy")], "nope.npy"),
        (["predict", run_folder, scan, "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["predict", str(tmp_path / "missing"), scan], "run folder not found"),
        (["explain", run_folder, scan, "--slices", "-1"], "Received: --slices -1"),
        (["explain", run_folder, scan, "--slices", "0"], "Received: --slices 0"),
        (["explain", run_folder, scan, "--class", "7"], "class index 7 is out of range"),
        (["explain", run_folder, inside, "--layer", "nope"], "no feature layer 'nope'"),
        (["explain", run_folder, str(tmp_path / "nope.npy")], "nope.npy"),
        (["evaluate", run_folder, "--threshold", "nan"], "Received: --threshold nan"),
        (["evaluate", run_folder, "--threshold", "2"], "Received: --threshold 2.0"),
        (["predict", run_folder, scan, "--output", scan], "is an input"),
        (["predict", run_folder, scan, "--output", str(tmp_path)], "is a folder"),
        (["predict", run_folder, str(tmp_path), "--output", str(tmp_path / "p.csv")], "inside the input folder"),
        (["predict", run_folder, scan, "--output", str(tmp_path / "no" / "p.csv")], "does not exist"),
        (["predict", run_folder, scan, "--output", os.path.join(run_folder, "manifest.csv")], "inside the run folder"),
        (["predict", run_folder, scan, "--output", os.path.join(run_folder, "new.csv")], "inside the run folder"),
        (["export", run_folder, "--version", "-1", "--out", str(tmp_path / "e")], "Received: --version -1"),
        (["export", run_folder, "--name", "../../x", "--out", str(tmp_path / "e")], "Received: --name ../../x"),
        (["export", run_folder, "--format", "onnx"], "argument --format: invalid choice: 'onnx'"),
        (["export", run_folder, "--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
        (["export", str(tmp_path)], "not a run folder"),
        (["bench", "table3", "--dataset", "breastmnist"], "argument table: invalid choice: 'table3'"),
        (["bench", "table1", "--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
        (["analyze", "scale-correlation", "--images", str(tmp_path / "none")], "none"),
        (["trian"], "invalid choice: 'trian'"),
        (["demo", "--epochs", "0", "--out", str(tmp_path / "demo")], "Received: --epochs 0"),
        (["evaluate", run_folder, run_folder], "given twice"),
    ]
    for argv, message in cases:
        _one_line_error(capsys, argv, message)
    assert not (tmp_path / "demo").exists()


def test_a_bench_budget_no_run_can_take_fails_before_anything_is_written(tmp_path, capsys):
    out, work = tmp_path / "results", tmp_path / "work"
    base = ["bench", "table1", "--dataset", "breastmnist", "--presets", "mims", "mi_pre", "--out", str(out),
            "--work", str(work)]
    for extra, message in [(["--central", "0"], "Received: --central 0"),
                           (["--instances", "9-3"], "Received: --instances 9-3"),
                           (["--backbone", "resnet5"], "Unknown backbone 'resnet5'"),
                           (["--weights", str(tmp_path / "none.h5"), "--backbone", "mobilenet"], "none.h5")]:
        _one_line_error(capsys, base + extra, message)
        assert not out.exists() and not work.exists()  # no settings.json to block the corrected command


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "x", "--format", "onnx"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mims export: error: argument --format: invalid choice")


def test_a_typo_is_answered_before_tensorflow_starts():
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    for argv in (["train", "--epcohs", "3"], ["train", "--learning-rate", "nan"], ["train", "--data", "/nope.npz"],
                 ["evaluate", "/nonexistent/run"], ["train", "--data", "synthetic", "--preset", "mimz"]):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mims_tf.cli.main", *argv], env=env, capture_output=True,
                              text=True)
        elapsed = time.perf_counter() - start
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert elapsed < 2.0, (argv, elapsed)


def test_bench_budget_flags_parse_and_read_as_train_flags():
    from mims_tf.cli.bench import BUDGET_FLAGS
    from mims_tf.cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for dest in BUDGET_FLAGS:
        train, bench = ([a for a in commands[c]._actions if a.dest == dest] for c in ("train", "bench"))
        assert len(bench) == 1 and (bench[0].help, bench[0].type) == (train[0].help, train[0].type), dest
    args = parser.parse_args(["bench", "table1", "--dataset", "breastmnist", "--instances", "12-18",
                              "--freeze-backbone", "--deterministic"])
    assert (args.instances, args.freeze_backbone, args.deterministic) == ((12, 18), True, True)

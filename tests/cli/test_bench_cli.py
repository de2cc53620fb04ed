"""`mims bench` installed (the data root from --data-root or $MIMS_DATA_ROOT, checked first), `--verify` at the
recorded settings, and the library's Python argument names shown as flags by `mims train` and `mims bench`."""

import os
import shutil
import subprocess
import sys

import pytest

from mims_tf.cli.bench import default_data_root
from mims_tf.cli.flags import in_flag_terms
from mims_tf.cli.main import main
from tests.conftest import requires_tensorflow

COMMITTED = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results")


def _error_line(capsys, argv):
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(err) == 1 and err[0].startswith("mims "), err
    return err[0]


def test_the_default_data_root_is_the_variable_or_a_checkouts_shared_data(tmp_path):
    # installed: .venv/lib/python3.x/site-packages/mims_tf, and a stray .venv/lib/python3.x/shared/data
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "mims_tf").mkdir(parents=True)
    (tmp_path / "venv" / "lib" / "python3.11" / "shared" / "data").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert default_data_root({}, str(site / "mims_tf"), str(elsewhere)) is None
    assert default_data_root({"MIMS_DATA_ROOT": "/my/data"}, str(site / "mims_tf"), str(elsewhere)) == "/my/data"
    # a checkout (source tree, editable install, or the working folder) with ../shared/data beside it
    checkout = tmp_path / "repo"
    (checkout / "mims_tf").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    assert default_data_root({}, str(checkout / "mims_tf"), str(elsewhere)) is None  # no shared/data there
    (tmp_path / "shared" / "data").mkdir(parents=True)
    expected = str(tmp_path / "shared" / "data")
    assert default_data_root({}, str(checkout / "mims_tf"), str(elsewhere)) == expected
    assert default_data_root({}, str(site / "mims_tf"), str(checkout)) == expected  # installed, run in the checkout


def test_a_missing_data_set_is_one_line_naming_the_flag_and_variable_before_tensorflow(tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=os.getcwd(), MIMS_DATA_ROOT=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", "import sys; from mims_tf.cli.main import main; rc = main(); "
                           "assert 'tensorflow' not in sys.modules; sys.exit(rc)",
                           "bench", "table1", "--dataset", "breastmnist", "--out", str(out)],
                          env=env, capture_output=True, text=True, cwd=str(tmp_path))
    expected = os.path.join(str(tmp_path), "breastmnist", "breastmnist.npz")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"mims bench: error: {tmp_path}: data set breastmnist not found (expected "
                                   f"{expected}); give --data-root or set MIMS_DATA_ROOT")
    assert not out.exists()


def test_no_data_root_at_all_says_how_to_give_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mims_tf.cli.bench.default_data_root", lambda: None)
    line = _error_line(capsys, ["bench", "table1", "--dataset", "breastmnist", "--out", str(tmp_path / "r")])
    assert line == ("mims bench: error: no data root: data set breastmnist is looked for as "
                    "<root>/breastmnist/breastmnist.npz; give --data-root or set MIMS_DATA_ROOT")
    monkeypatch.setenv("MIMS_DATA_ROOT", str(tmp_path / "env"))  # --data-root wins over the variable
    line = _error_line(capsys, ["bench", "table1", "--dataset", "breastmnist", "--data-root", str(tmp_path / "flag")])
    assert line.startswith(f"mims bench: error: {tmp_path / 'flag'}: data set breastmnist not found")


@pytest.fixture
def committed_copy(tmp_path, monkeypatch):
    """(results folder holding a copy of the committed table1_breastmnist, a data root naming breastmnist,
    the options of each rerun: runs are replaced)."""
    from mims_tf.bench import runner

    out = tmp_path / "results"
    (out / "table1_breastmnist").mkdir(parents=True)
    for name in ("results.csv", "table.md"):
        shutil.copy(os.path.join(COMMITTED, "table1_breastmnist", name), out / "table1_breastmnist" / name)
    (tmp_path / "data" / "breastmnist").mkdir(parents=True)
    (tmp_path / "data" / "breastmnist" / "breastmnist.npz").write_bytes(b"")
    calls = []

    def run_in_child(data, preset, seed, run_dir, options):
        calls.append(options)
        return {"environment": "here"}, {"auroc": 0.5}

    monkeypatch.setattr(runner, "run_in_child", run_in_child)
    return ["--out", str(out), "--work", str(tmp_path / "work"), "--data-root", str(tmp_path / "data")], calls


@requires_tensorflow()
def test_verify_reruns_at_the_recorded_settings_and_names_flags_that_differ(committed_copy, capsys):
    flags, calls = committed_copy
    assert main(["bench", "table1", "--dataset", "breastmnist", "--verify", "2", *flags]) == 0
    out = capsys.readouterr().out
    assert [(c["image_size"], c["epochs"], c["batch_size"]) for c in calls] == [(96, 15, 16)] * 2
    assert "rerun with the settings recorded with the results: {'image_size': 96, 'epochs': 15" in out
    line = _error_line(capsys, ["bench", "table1", "--dataset", "breastmnist", "--verify", "1", "--epochs", "10",
                                *flags])
    assert line.endswith("a rerun uses those settings (leave the others out). Received: --epochs 10"), line
    assert len(calls) == 2


@requires_tensorflow()
def test_verify_refuses_results_that_record_no_settings(committed_copy, capsys):
    flags, calls = committed_copy
    os.remove(os.path.join(flags[1], "table1_breastmnist", "table.md"))
    line = _error_line(capsys, ["bench", "table1", "--dataset", "breastmnist", "--verify", "1", *flags])
    assert line.endswith("table1_breastmnist: no settings are recorded with these results (settings.json, or the "
                         "budget line of table.md), so they cannot be rerun as they were made")
    assert not calls


OPTIONS = ["--bag-pattern", "--one-bag-per-file", "--weights", "--learning-rate", "--instances", "--image-size",
           "--data", "--threshold-target", "--batch-size", "--epochs", "--classes", "--k", "--out"]


@pytest.mark.parametrize("message, given, shown", [
    ("f: a bag pattern (bag_pattern, e.g. an id) or one bag per file (one_bag_per_file=True)", {},
     "f: a bag pattern (--bag-pattern, e.g. an id) or one bag per file (--one-bag-per-file)"),
    ("Put x.h5 into the Keras cache /k/models/ or pass weights='/path/to/weights.h5' (or weights=None to train "
     "from scratch).", {}, "Put x.h5 into the Keras cache /k/models/ or pass --weights /path/to/weights.h5 (or "
     "--weights none to train from scratch)."),
    ("Give either `bag_pattern` or `one_bag_per_file=True`, not both. Received: bag_pattern='T-\\w', "
     "one_bag_per_file=True", {"bag_pattern": "T-\\w", "one_bag_per_file": True},
     "Give either --bag-pattern or --one-bag-per-file, not both. Received: --bag-pattern 'T-\\w', --one-bag-per-file"),
    ("`learning_rate` must be positive. Received: learning_rate=nan", {"learning_rate": float("nan")},
     "--learning-rate must be positive. Received: --learning-rate nan"),
    ("x. Received: instances=(9, 3)", {"instances": (9, 3)}, "x. Received: --instances 9-3"),
    ("y. Received: image_size=(2, 2)", {"image_size": 2}, "y. Received: --image-size 2"),
    ("z. Received: target=1.5", {"threshold_target": 1.5}, "z. Received: --threshold-target 1.5"),
    ("use batch_size=1 or replacement=True. Received: batch_size=8", {"batch_size": 8},
     "use --batch-size 1 or replacement=True. Received: --batch-size 8"),
    # values from a config file (not given as flags) keep their names; so do messages about config keys
    ("`out` must be a folder path. Received: out=''", {"out": "runs/x"}, "--out must be a folder path. Received: "
     "out=''"),  # the flag gave another value: this one is the config file's
    ("`learning_rate` must be positive. Received: learning_rate=0.0", {"learning_rate": 0.1},
     "--learning-rate must be positive. Received: learning_rate=0.0"),
    ("`k` must be a positive integer. Received: k=0", {"k": 0}, "--k must be a positive integer. Received: --k 0"),
    ("k=500 is larger than a bag of 2 gives. Received: k=500", {"k": 500},
     "k=500 is larger than a bag of 2 gives. Received: --k 500"),  # a one-letter name is prose but after Received
    ("`classes` must be a list. Received: classes='MSS'", {}, "--classes must be a list. Received: classes='MSS'"),
    ("run.yaml: unknown config key 'lerning_rate'. Did you mean 'learning_rate'? Valid keys of training: epochs, "
     "batch_size", {"epochs": 1},
     "run.yaml: unknown config key 'lerning_rate'. Did you mean 'learning_rate'? Valid keys of training: epochs, "
     "batch_size"),
    ("`model.image_size` comes from the data (data.image_size)", {}, "`model.image_size` comes from the data "
     "(data.image_size)"),
])
def test_library_argument_names_are_shown_as_flags(message, given, shown):
    assert in_flag_terms(message, OPTIONS, given) == shown


def test_only_the_commands_own_flags_are_named(capsys, tmp_path):
    # bench has no --bag-pattern: a data set's own setting keeps its name there
    bench_options = ["--weights", "--epochs", "--data-root"]
    assert in_flag_terms("one bag per file (one_bag_per_file=True)", bench_options) == \
        "one bag per file (one_bag_per_file=True)"
    assert in_flag_terms("`data_root` is required", bench_options) == "--data-root is required"


@requires_tensorflow()
def test_train_names_the_flags_that_group_files_into_bags(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
    line = _error_line(capsys, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                "--epochs", "1", "--image-size", "16"])
    assert line.endswith("a bag pattern (--bag-pattern, e.g. a patient id in the file names) or one bag per file "
                         "(--one-bag-per-file)"), line


@requires_tensorflow()
def test_a_task_needing_imagenet_weights_offline_fails_before_reading_data(tmp_path, capsys, monkeypatch):
    from keras.src.utils import file_utils

    import mims_tf.runs.fit

    def offline(*args, **kwargs):
        raise Exception(f"URL fetch failure on https://example/{args[0]}: None -- [Errno -3] name resolution")

    def train(*args, **kwargs):
        raise AssertionError("the data was read")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setattr(mims_tf.runs.fit, "train", train)
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
    line = _error_line(capsys, ["train", "--task", "histology", "--data", str(tmp_path / "data"), "--bag-pattern",
                                "x", "--out", str(tmp_path / "run")])
    assert line == ("mims train: error: the ImageNet weights of ResNet101 (resnet101_weights_tf_dim_ordering_tf_"
                    f"kernels_notop.h5) are not in the Keras cache {tmp_path / 'keras' / 'models'} and cannot be "
                    "downloaded (no network?): put the file there (or set KERAS_HOME to a folder whose models/ "
                    "holds it), give --weights FILE.h5, or --weights none to train from scratch")


@requires_tensorflow()
def test_a_task_prints_the_settings_in_effect_after_the_flags(tmp_path, capsys):
    assert main(["train", "--task", "histology", "--data", "synthetic", "--out", str(tmp_path / "run"),
                 "--backbone", "tiny", "--weights", "none", "--image-size", "16", "--batch-size", "2",
                 "--instances", "2", "--epochs", "1"]) == 0
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("task histology"))
    assert line == ("task histology, the paper's settings under the ones given; in effect: model: backbone 'tiny' "
                    "(task: 'resnet101'), weights None (task: 'imagenet'), kernels 'crc'; data: image_size [16, 16] "
                    "(task: [224, 224]), instances 2 (task: 8); training: batch_size 2 (task: 4), learning_rate "
                    "0.0001")

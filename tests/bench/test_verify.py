"""`verify` reruns rows with the settings recorded with them; errors of the worker process come back whole."""

import os
import pickle
import shutil

import pytest

from mims_tf.bench import runner
from mims_tf.bench.runner import recorded_settings, verify
from mims_tf.data.errors import DataError
from tests.conftest import requires_tensorflow

COMMITTED = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results")


def _results(out, name, settings_json=None, table_of=None):
    """A results folder `out/name` with two finished rows (and a settings.json, or a committed table.md)."""
    folder = out / name
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text("preset,seed,val_auroc,test_auroc,test_accuracy,seconds,environment\n"
                                        "mims,0,0.8,0.8000,0.7,10,here\nmims,1,0.8,0.8200,0.7,10,here\n")
    if settings_json is not None:
        (folder / "settings.json").write_text(settings_json)
    if table_of is not None:
        shutil.copy(os.path.join(COMMITTED, table_of, "table.md"), folder / "table.md")
    return folder


@pytest.fixture
def data_root(tmp_path):
    """A data root holding (the name of) breastmnist: enough where the runs themselves are replaced."""
    (tmp_path / "data" / "breastmnist").mkdir(parents=True)
    (tmp_path / "data" / "breastmnist" / "breastmnist.npz").write_bytes(b"")
    return str(tmp_path / "data")


@pytest.fixture
def reruns(monkeypatch):
    """Replaces the child run: records each run's options, scores the committed AUROC back."""
    calls = []

    def run_in_child(data, preset, seed, run_dir, options):
        calls.append(dict(options, data=data, preset=preset, seed=seed))
        return {"environment": "rerun here"}, {"auroc": 0.8 if seed == 0 else 0.82}

    monkeypatch.setattr(runner, "run_in_child", run_in_child)
    return calls


def test_the_settings_of_a_results_folder_are_read_from_settings_json_or_its_table_header(tmp_path):
    old = _results(tmp_path, "table1_breastmnist", table_of="table1_breastmnist")  # from before settings.json
    assert recorded_settings(str(old)) == {"image_size": 96, "epochs": 15, "batch_size": 16, "learning_rate": 0.003}
    new = _results(tmp_path, "table1_x", settings_json='{"image_size": 112, "instances": [12, 18]}')
    assert recorded_settings(str(new)) == {"image_size": 112, "instances": [12, 18]}
    assert recorded_settings(str(_results(tmp_path, "table1_none"))) is None
    for name in os.listdir(COMMITTED):  # every committed table records its settings
        if name.startswith("table") and os.path.isfile(os.path.join(COMMITTED, name, "results.csv")):
            assert recorded_settings(os.path.join(COMMITTED, name)), name


def test_verify_reruns_with_the_recorded_settings_not_the_defaults(tmp_path, data_root, reruns):
    _results(tmp_path / "results", "table1_breastmnist", table_of="table1_breastmnist")
    checks = verify("table1", "breastmnist", 2, out=str(tmp_path / "results"), work=str(tmp_path / "work"),
                    data_root=data_root, cache_dir=str(tmp_path / "cache"))
    assert len(reruns) == 2
    for options in reruns:
        assert (options["image_size"], options["epochs"], options["batch_size"], options["learning_rate"]) == (
            96, 15, 16, 0.003)
        assert options["cache_dir"] == str(tmp_path / "cache")  # where, not what: may be given
        assert options["data"] == os.path.join(data_root, "breastmnist", "breastmnist.npz")
    assert [c["verdict"] for c in checks] == ["identical", "identical"]
    assert checks[0]["settings"]["epochs"] == 15


def test_verify_refuses_other_settings_and_folders_that_record_none(tmp_path, data_root, reruns):
    out = tmp_path / "results"
    _results(out, "table1_breastmnist", table_of="table1_breastmnist")
    with pytest.raises(ValueError, match=r"a rerun uses those settings.*Received: epochs=10, image_size=64$"):
        verify("table1", "breastmnist", 1, out=str(out), data_root=data_root, epochs=10, image_size=64)
    verify("table1", "breastmnist", 1, out=str(out), work=str(tmp_path / "w"), data_root=data_root, epochs=15)
    _results(out, "table2_breastmnist")
    with pytest.raises(ValueError, match="table2_breastmnist: no settings are recorded with these results"):
        verify("table2", "breastmnist", 1, out=str(out), data_root=data_root)
    assert len(reruns) == 1


def test_verify_finds_the_recorded_weights_file_where_it_is_now(tmp_path, data_root, reruns):
    out = tmp_path / "results"
    _results(out, "table1_breastmnist_pretrained",
             settings_json='{"backbone": "mobilenet", "weights": "../elsewhere/w.h5", "epochs": 2}')
    with pytest.raises(ValueError, match="Weights file not found: ../elsewhere/w.h5"):  # checked before any run
        verify("table1", "breastmnist", 1, out=str(out), data_root=data_root, tag="pretrained")
    moved = tmp_path / "w.h5"
    moved.write_bytes(b"h5")
    verify("table1", "breastmnist", 1, out=str(out), work=str(tmp_path / "w"), data_root=data_root,
           weights=str(moved))
    assert reruns[-1]["weights"] == str(moved) and reruns[-1]["epochs"] == 2
    other = tmp_path / "other.h5"
    other.write_bytes(b"h5")
    with pytest.raises(ValueError, match="Received: weights="):  # another file is another budget
        verify("table1", "breastmnist", 1, out=str(out), data_root=data_root, weights=str(other))


def test_a_data_error_pickles_with_its_arguments():
    error = pickle.loads(pickle.dumps(DataError("/data/a.png", "truncated file")))
    assert type(error) is DataError and (error.path, error.reason) == ("/data/a.png", "truncated file")
    assert str(error) == "/data/a.png: truncated file"


class _Unpicklable(ValueError):
    def __init__(self, first, second):
        super().__init__(f"{first} and {second}\nmore")


def test_an_error_that_cannot_cross_back_becomes_its_one_line():
    assert runner._portable(DataError("x", "bad")).reason == "bad"  # crosses as itself
    converted = runner._portable(_Unpicklable("one", "two"))
    assert type(converted) is RuntimeError and str(converted) == "one and two"


@requires_tensorflow()
def test_a_worker_failure_comes_back_as_its_message(tmp_path):
    # class folders but no grouping into bags: a DataError in the child process, before any training
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
    with pytest.raises(DataError, match="the grouping of files into bags must be given") as raised:
        runner.run_in_child(str(tmp_path / "data"), "mims", 0, str(tmp_path / "run"),
                            {"image_size": 16, "epochs": 1, "classes": ["a", "b"]})
    assert raised.value.path == str(tmp_path / "data")

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mims_tf
from mims_tf.runs.config import RunConfig
from mims_tf.runs.evaluate import evaluate_runs
from mims_tf.runs.fit import train
from mims_tf.runs.predict import predict
from tests.conftest import TINY_RUN as TINY, requires_tensorflow

pytestmark = requires_tensorflow()

KILL_DRIVER = """
import os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
from mims_tf.runs.config import RunConfig
from mims_tf.runs.fit import train

class KillAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

config = RunConfig.from_dict(dict(out=sys.argv[1], epochs=3, batch_size=8, checkpoint_steps=5, learning_rate=3e-3,
                                  image_size=32, instances=6))
train(config, verbose=0, callbacks=[KillAt()])
"""


@pytest.fixture
def trained(trained_run_and_summary):
    """The session's tiny run (tests/conftest.py), trained with TINY: (its folder, train's summary)."""
    return trained_run_and_summary


def test_a_run_folder_holds_everything(trained):
    out, summary = trained
    for name in ("config.yaml", "manifest.csv", "best.keras", "last.keras", "state.json", "log.csv", "tensorboard",
                 "decision.json", "environment.json"):
        assert os.path.exists(os.path.join(out, name)), name
    session = json.load(open(os.path.join(out, "environment.json")))["sessions"][0]
    assert {"commit", "cpu", "isa", "onednn", "threads", "tensorflow", "keras", "deterministic"} <= set(session)
    assert summary["environment"].startswith(session["commit"])
    with open(os.path.join(out, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "val_auroc" in rows[0]
    assert summary["best_epoch"] in (1, 2) and 0 <= summary["best_val_auroc"] <= 1
    model = mims_tf.load_model(os.path.join(out, "best.keras"))
    assert model.output_shape == (None, 2)
    assert not any(name.endswith(".tmp.keras") for name in os.listdir(out))


@pytest.mark.slow
def test_same_seed_same_config_same_auroc(trained, trained_run_copy, tmp_path):
    _, summary = trained
    out = trained_run_copy  # evaluate writes its files into the run folder
    again = train(RunConfig.from_dict(dict(out=str(tmp_path / "b"), **TINY)), verbose=0)
    assert again["best_val_auroc"] == summary["best_val_auroc"]
    results, _ = evaluate_runs([out, str(tmp_path / "b")])
    assert results[0]["auroc"] == results[1]["auroc"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    subprocess.run([sys.executable, "-c", KILL_DRIVER, whole, "-1"], check=True, env=env, capture_output=True)
    crashed = subprocess.run([sys.executable, "-c", KILL_DRIVER, killed, "17"], env=env, capture_output=True)
    assert crashed.returncode == -9  # killed in epoch 2 (12 steps per epoch), after the step-15 checkpoint
    assert json.load(open(os.path.join(killed, "state.json")))["epochs_done"] == 1
    from mims_tf.cli.main import main

    assert main(["train", "--out", killed, "--resume"]) == 0
    a = mims_tf.load_model(os.path.join(whole, "last.keras"))
    b = mims_tf.load_model(os.path.join(killed, "last.keras"))
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 36
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    best_whole = json.load(open(os.path.join(whole, "state.json")))["best_val_auroc"]
    assert json.load(open(os.path.join(killed, "state.json")))["best_val_auroc"] == best_whole
    logs = [list(csv.DictReader(open(os.path.join(folder, "log.csv")))) for folder in (whole, killed)]
    assert [row["epoch"] for row in logs[1]] == ["1", "2", "3"]  # counted from 1, the resumed epoch once
    for row_whole, row_killed in zip(*logs):  # the resumed epoch's loss covers its steps before the kill too
        assert float(row_killed["loss"]) == pytest.approx(float(row_whole["loss"]), rel=1e-4)


@pytest.mark.slow
def test_evaluate_writes_per_bag_csv_roc_and_metrics(trained_run_copy):
    out = trained_run_copy  # evaluate writes its files into the run folder
    import shutil

    copy = out + "_copy"  # the same run twice, as two folders (one folder given twice is refused)
    if not os.path.exists(copy):
        shutil.copytree(out, copy)
    with pytest.raises(ValueError, match="given twice"):
        evaluate_runs([out, out])
    results, groups = evaluate_runs([out, copy])
    r = results[0]
    assert list(groups) == [("mims", "synthetic")]  # one line per preset and data set
    summary = groups[("mims", "synthetic")]
    assert {"auroc", "accuracy", "sensitivity", "specificity", "ece_calibrated"} <= set(summary)
    assert summary["auroc"]["std"] == 0.0 and summary["auroc"]["n"] == 2
    assert r["bags"] == 32 and 0 <= r["threshold"] <= 1 and r["threshold_from"].startswith("validation")
    assert r["auroc_low"] <= r["auroc"] <= r["auroc_high"] and r["temperature"] > 0
    with open(os.path.join(out, "eval_test.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32 and set(rows[0]) == {"bag", "label", "p_0", "p_1", "predicted", "threshold", "input_check"}
    for name in ("roc_test.png", "reliability_test.png"):
        assert open(os.path.join(out, name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    fixed = evaluate_runs([out], threshold=0.5)[0][0]
    assert fixed["threshold"] == 0.5 and fixed["threshold_from"] == "given"
    sampled = evaluate_runs([out], instances=2)[0][0]  # every bag on 2 sampled instances, own files
    assert sampled["instances"] == 2 and r["instances"] == "all" and 0 <= sampled["auroc"] <= 1
    assert os.path.isfile(os.path.join(out, "eval_test_2inst.json"))
    assert os.path.isfile(os.path.join(out, "eval_test.json"))
    with pytest.raises(ValueError, match="Received: instances=0"):
        evaluate_runs([out], instances=0)


def test_predict_files_and_manifest_to_csv_and_json(trained, tmp_path):
    out, _ = trained
    files = []
    for i in range(3):
        np.save(tmp_path / f"v{i}.npy", np.random.default_rng(i).uniform(0, 255, (5, 40, 40)).astype(np.float32))
        files.append(str(tmp_path / f"v{i}.npy"))
    results = predict(out, files, out=str(tmp_path / "p.json"), fmt="json")
    assert [r["bag"] for r in results] == files
    stored = json.load(open(tmp_path / "p.json"))
    assert abs(sum(stored[0]["probabilities"].values()) - 1) < 1e-5
    decision = json.load(open(os.path.join(out, "decision.json")))["best"]
    for r in stored:  # the class follows from the calibrated probability and the stored threshold
        assert r["threshold"] == decision["threshold"]
        assert r["predicted"] == ("1" if r["probabilities"]["1"] >= r["threshold"] else "0")
    (tmp_path / "m.csv").write_text("path,bag\n" + "".join(f"{f},patient{i // 2}\n" for i, f in enumerate(files)))
    predict(out, manifest_path=str(tmp_path / "m.csv"), out=str(tmp_path / "p.csv"))
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["bag"] for r in rows] == ["patient0", "patient1"]


MIRRORED_DRIVER = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mims_tf.runs.config import RunConfig
from mims_tf.runs.fit import train
# keep="average_last": best.keras is set from the mean of mirrored weights (the last epoch's, here)
summary = train(RunConfig.from_dict(dict(out=sys.argv[1], epochs=2, batch_size=8, image_size=32, instances=4,
                            strategy="mirrored", learning_rate=3e-3, keep="average_last")), verbose=0)
print("replicas", summary["replicas"])  # what train() used, not what this driver computes
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpu_devices(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", MIRRORED_DRIVER, str(tmp_path / "m")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replicas 2" in done.stdout
    state = json.load(open(tmp_path / "m" / "state.json"))
    assert state["epochs_done"] == 2 and 0 <= state["best_val_auroc"] <= 1
    assert state["averaged"] == {"from": 2, "epochs": 1}


MULTI_WORKER_DRIVER = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
index, ports, out = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": index}})
from mims_tf.runs.config import RunConfig
from mims_tf.runs.fit import train
# One seed (one epoch order), and each worker reads only its shard of every epoch: the workers see
# different bags, so workers that did not train one model together (initial values broadcast,
# gradients all-reduced) would end with different weights.
summary = train(RunConfig.from_dict(dict(out=out, epochs=4, batch_size=8, image_size=32, instances=4, seed=0,
                            strategy="multi_worker", learning_rate=3e-3, keep="average_last")), verbose=0)
print("REPLICAS", summary["replicas"])
print("SHARDS", summary["data_shards"])
"""


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [str(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ",".join(ports)


@pytest.mark.slow
def test_multi_worker_strategy_with_two_workers_on_loopback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    ports = _free_ports(2)
    workers = [
        subprocess.Popen([sys.executable, "-c", MULTI_WORKER_DRIVER, str(i), ports, str(tmp_path / f"w{i}")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]
    assert all("REPLICAS 2" in out for out, _ in outputs)
    assert [f"SHARDS [({i}, 2)]" in out for i, (out, _) in enumerate(outputs)] == [True, True]
    assert json.load(open(tmp_path / "w0" / "state.json"))["epochs_done"] == 4
    a, b = (mims_tf.load_model(str(tmp_path / f"w{i}" / "last.keras")) for i in range(2))
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) > 0
    for x, y in zip(a.trainable_weights, b.trainable_weights):  # one model, trained together
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=x.path)
    # best.keras: the mean of epochs 3 and 4 (keep="average_last"), the same on both workers
    assert json.load(open(tmp_path / "w0" / "state.json"))["averaged"] == {"from": 3, "epochs": 2}
    a, b = (mims_tf.load_model(str(tmp_path / f"w{i}" / "best.keras")) for i in range(2))
    for x, y in zip(a.trainable_weights, b.trainable_weights):  # (batch-norm statistics are each worker's own)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=x.path)


LOCK_DRIVER = """
import sys, time
from mims_tf.runs.folder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(30)
"""


def test_a_run_folder_is_locked_while_a_process_trains_in_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    holder = subprocess.Popen([sys.executable, "-c", LOCK_DRIVER, str(tmp_path / "run")], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match="another process is training in this run folder"):
            train(RunConfig.from_dict(dict(out=str(tmp_path / "run"), **TINY)), verbose=0)
        assert not os.path.exists(tmp_path / "run" / "config.yaml")  # nothing written by the refused start
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path):
    out = str(tmp_path / "run")
    bad = dict(out=out, **dict(TINY, image_size=8), k=500)  # k cannot fit: fails after the manifest is written
    with pytest.raises(ValueError, match="k=500 is larger"):
        train(RunConfig.from_dict(bad), verbose=0)
    assert [n for n in os.listdir(out) if n != ".lock"] == []
    summary = train(RunConfig.from_dict(dict(out=out, **dict(TINY, epochs=1))), verbose=0)  # the corrected command
    assert summary["epochs_done"] == 1


@pytest.mark.slow
def test_a_loss_that_turns_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    import keras

    class PoisonAt(keras.callbacks.Callback):  # the classifier's weights become NaN before step 14 (epoch 2)
        def on_train_batch_begin(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 13:
                for v in self.model.trainable_variables[-2:]:
                    v.assign(v * float("nan"))

    out = str(tmp_path / "nan")
    with pytest.raises(RuntimeError, match="loss became NaN at step 14; training stopped"):
        train(RunConfig.from_dict(dict(out=out, **dict(TINY, epochs=3))), verbose=0, callbacks=[PoisonAt()])
    state = json.load(open(os.path.join(out, "state.json")))
    assert state["epochs_done"] == 1
    last = mims_tf.load_model(os.path.join(out, "last.keras"))
    assert all(np.isfinite(w).all() for w in last.get_weights())


def test_overwrite_replaces_a_run_but_never_a_folder_of_other_files(tmp_path, monkeypatch):
    from mims_tf.runs.fit import prepare_run_folder

    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("data: synthetic\n")  # the user's own config beside their files
    (project / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files that are not a run's"):
        prepare_run_folder(RunConfig.from_dict(dict(out=str(project), **TINY)), overwrite=True)
    assert (project / "notes.txt").read_text() == "mine"


def test_resume_continues_in_the_folder_named_even_when_the_run_was_started_elsewhere(trained, tmp_path, monkeypatch):
    import shutil

    out, _ = trained
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    monkeypatch.chdir(tmp_path)
    from mims_tf.runs.fit import prepare_run_folder

    config, resuming = prepare_run_folder(RunConfig.from_dict(dict(out=str(moved), **TINY)), resume=True)
    assert resuming and config.out == str(moved)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from mims_tf.models import build_model

    path = str(tmp_path_factory.mktemp("weights") / "tiny.weights.h5")
    build_model("mims", backbone="tiny", weights=None, image_size=(32, 32)).get_layer("backbone").save_weights(path)
    return path


def _frozen(out, weights, **values):
    return RunConfig.from_dict(dict(out=out, backbone="tiny", weights=weights, freeze_backbone=True,
                                    **{**TINY, **values}))


@pytest.mark.slow
def test_a_frozen_backbone_trains_the_head_on_cached_features(tmp_path, tiny_weights, caplog):
    import logging

    from mims_tf.models import build_model

    out = str(tmp_path / "frozen")
    with caplog.at_level(logging.INFO, logger="mims_tf"):
        summary = train(_frozen(out, tiny_weights, epochs=8), verbose=0)
    assert "train features kept: memory (96 bags, 4 view(s)" in caplog.text
    assert "val features kept: memory (32 bags, 1 view(s)" in caplog.text
    model = mims_tf.load_model(summary["best_model"])
    loaded = build_model("mims", backbone="tiny", weights=tiny_weights, image_size=(32, 32))
    for saved, original in zip(model.get_layer("backbone").weights, loaded.get_layer("backbone").weights):
        np.testing.assert_array_equal(np.array(saved), np.array(original))  # kernels and batch-norm statistics
    fresh = build_model("mims", backbone="tiny", weights=tiny_weights, image_size=(32, 32))
    assert any(not np.array_equal(np.array(a), np.array(b))
               for a, b in zip(model.get_layer("head_ms_conv").weights, fresh.get_layer("head_ms_conv").weights))
    last = mims_tf.load_model(os.path.join(out, "last.keras"))
    assert int(last.optimizer.iterations) == 8 * 12  # the saved model holds the optimizer the head trained with
    results, _ = evaluate_runs([out])
    assert 0 <= results[0]["auroc"] <= 1 and summary["decision"]["val_bags"] == 32


@pytest.mark.slow
def test_a_frozen_run_resumed_equals_an_uninterrupted_one(tmp_path, tiny_weights):
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    cache = str(tmp_path / "cache")  # features in a cache folder: the resumed run reads the ones it trained on
    train(_frozen(whole, tiny_weights, epochs=4, feature_views=2, cache_dir=cache), verbose=0)
    train(_frozen(resumed, tiny_weights, epochs=2, feature_views=2, cache_dir=cache), verbose=0)
    train(_frozen(resumed, tiny_weights, epochs=4, feature_views=2, cache_dir=cache), resume=True, verbose=0)
    a = mims_tf.load_model(os.path.join(whole, "last.keras"))
    b = mims_tf.load_model(os.path.join(resumed, "last.keras"))
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 48
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_a_frozen_run_without_feature_views_runs_the_backbone_every_step(tmp_path, tiny_weights, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="mims_tf"):
        train(_frozen(str(tmp_path / "plain"), tiny_weights, epochs=1, feature_views=0), verbose=0)
    assert "no feature cache (feature_views 0)" in caplog.text and "features kept" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mims_tf"):  # 2 epochs of 6 sampled instances: cheaper than 4 views
        train(_frozen(str(tmp_path / "short"), tiny_weights, epochs=2), verbose=0)
    assert "costs more than training on images" in caplog.text and "features kept" not in caplog.text


def test_resume_config_allows_more_epochs_and_nothing_else(tmp_path):
    from mims_tf.runs.fit import resume_config
    from mims_tf.runs.folder import RunFolder

    out = tmp_path / "run"
    out.mkdir()
    RunFolder(out).save_config(RunConfig.from_dict({"training": {"epochs": 2}, "out": "elsewhere"}))
    config = resume_config(str(out), {"training": {"epochs": 5}, "out": str(out)})
    assert (config.training.epochs, config.out) == (5, str(out))
    with pytest.raises(ValueError, match=r"only training.epochs, out may change. Received: data.source, seed"):
        resume_config(str(out), {"data": {"source": "other.csv"}, "seed": 3})
    with pytest.raises(ValueError, match="no run to resume"):
        resume_config(str(tmp_path / "none"))


def test_resume_refuses_a_config_edited_since_the_run_started(trained_run_copy):
    from mims_tf.runs.fit import prepare_run_folder

    path = os.path.join(trained_run_copy, "config.yaml")
    text = open(path).read()
    open(path, "w").write(text.replace("preset: mims\n", "preset: mi_pre\n"))
    with pytest.raises(ValueError, match=r"config.yaml: edited since the run started \(model.preset: 'mims' then, "
                                         r"'mi_pre' now\); a resumed run trains the model it started with"):
        prepare_run_folder(RunConfig.from_dict(dict(out=trained_run_copy, **TINY)), resume=True)
    open(path, "w").write(text.replace("epochs: 2\n", "epochs: 3\n"))  # more epochs: what a resume may change
    config, resuming = prepare_run_folder(RunConfig.from_dict(dict(out=trained_run_copy, **TINY)), resume=True)
    assert resuming and config.preset == "mims"

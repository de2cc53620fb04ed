"""Training runs: a run folder with config, manifest, checkpoints, best model and logs; resume after a crash.

Run folder:

    config.yaml      the resolved configuration
    manifest.csv     the manifest with the splits used
    last.keras       model and optimizer state, every `checkpoint_steps` steps and every epoch
    best.keras       the model of the epoch with the best validation AUROC
    state.json       best validation AUROC and its epoch
    log.csv          one row of metrics per epoch
    tensorboard/     TensorBoard logs

Every file is written to a temporary name and renamed into place, so a crash
never leaves half a file. The global step is the optimizer's `iterations`,
saved inside `last.keras`, so model, optimizer and data position always agree:
`resume` restarts the data stream at that step (`make_dataset(start_step=...)`).
"""

import json
import math
import os
import shutil
import sys

import keras
import numpy as np

from mims_tf.data import BagSource, assign_splits, from_class_folders, from_medmnist, from_rows, make_dataset
from mims_tf.data import read_manifest, write_manifest
from mims_tf.data.synthetic import write_dataset
from mims_tf.train.config import load_config, save_config
from mims_tf.utils import atomic_path, write_json


def _atomic_save(model, path):
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _step(model):
    """The global step: the optimizer's iteration count (a mirrored variable under a strategy)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations.value.read_value()))


def build_manifest(config, run_dir):
    """The manifest named by `config.data`, with splits (assigned by bag where missing)."""
    data = config.data
    if data == "synthetic":
        path = write_dataset(os.path.join(run_dir, "data"), seed=config.seed, instances=16, size=64)
        manifest = from_medmnist(path, classes=config.classes)
    elif data.lower().endswith(".csv"):
        manifest = read_manifest(data, classes=config.classes)
    elif data.lower().endswith(".npz"):
        manifest = from_medmnist(data, classes=config.classes)
    elif os.path.isdir(data):
        manifest = from_class_folders(data, bag_pattern=config.bag_pattern, classes=config.classes)
    else:
        raise ValueError(
            f"{data}: `data` must be a manifest .csv, a MedMNIST-style .npz, a folder of class folders, or 'synthetic'"
        )
    if any(not row["split"] for row in manifest.rows):
        manifest = assign_splits(manifest, config.split_fractions, seed=config.split_seed)
    return manifest


class RunCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` every `every` steps and each epoch, and `best.keras` by validation AUROC."""

    def __init__(self, run_dir, every, state):
        super().__init__()
        self.run_dir, self.every, self.state = run_dir, every, state

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) % self.every == 0:
            _atomic_save(self.model, os.path.join(self.run_dir, "last.keras"))

    def on_epoch_end(self, epoch, logs=None):
        auroc = (logs or {}).get("val_auroc")
        if auroc is not None and auroc > self.state["best_val_auroc"]:
            _atomic_save(self.model, os.path.join(self.run_dir, "best.keras"))
            self.state.update(best_val_auroc=float(auroc), best_epoch=epoch + 1)
        _atomic_save(self.model, os.path.join(self.run_dir, "last.keras"))
        self.state["epochs_done"] = epoch + 1
        write_json(os.path.join(self.run_dir, "state.json"), self.state)


def _prepare_run_dir(config, resume, overwrite):
    run_dir = config.out
    config_path = os.path.join(run_dir, "config.yaml")
    if os.path.exists(config_path):
        if resume:
            stored = load_config(config_path)
            if config.epochs != stored.epochs:  # the one setting a resumed run may change
                stored.epochs = config.epochs
                save_config(stored, config_path)
            return stored, True
        if not overwrite:
            raise ValueError(
                f"{run_dir}: holds another run (config.yaml); pass --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    elif resume:
        raise ValueError(f"{run_dir}: no run to resume (no config.yaml)")
    elif os.path.isdir(run_dir) and os.listdir(run_dir) and not overwrite:
        raise ValueError(f"{run_dir}: folder is not empty; pass --overwrite to use it anyway")
    os.makedirs(run_dir, exist_ok=True)
    save_config(config, config_path)
    return config, False


def _strategy(name):
    import tensorflow as tf

    if name == "mirrored":
        if not tf.config.list_physical_devices("GPU") and len(tf.config.list_logical_devices("CPU")) > 1:
            # no GPU: mirror over the logical CPU devices the process configured
            return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs TF_CONFIG (cluster and task) in the environment")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def train(config, resume=False, overwrite=False, verbose="auto", callbacks=()):
    """Trains as `config` says; returns a summary dict. See the module docstring.

    Args:
        config: a `TrainConfig`.
        resume: continue the run in `config.out` (its stored config; `epochs` may grow).
        overwrite: replace the run in `config.out`.
        verbose: Keras progress output (`"auto"`, 0, 1, 2).
        callbacks: extra Keras callbacks, run after the run's own.
    """
    from mims_tf.models import build_model
    from mims_tf.train.compile import compile_model

    config, resuming = _prepare_run_dir(config, resume, overwrite)
    run_dir = config.out
    precision = config.resolved_precision()
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(precision)
    try:
        manifest_path = os.path.join(run_dir, "manifest.csv")
        if resuming and os.path.exists(manifest_path):
            manifest = read_manifest(manifest_path, classes=config.classes, check_files=False)
        else:
            manifest = build_manifest(config, run_dir)
            write_manifest(manifest, manifest_path)
        options = dict(central=config.central, normalize=config.normalize)
        train_source = BagSource(manifest, "train", **options)
        val_source = BagSource(manifest, "val", **options)
        size = (config.image_size, config.image_size)

        state_path = os.path.join(run_dir, "state.json")
        state = {"best_val_auroc": -1.0, "best_epoch": None, "epochs_done": 0}
        if resuming and os.path.exists(state_path):
            with open(state_path, encoding="utf-8") as f:
                state.update(json.load(f))

        strategy = _strategy(config.strategy)
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            last = os.path.join(run_dir, "last.keras")
            if resuming and os.path.exists(last):
                model = keras.saving.load_model(last)
            else:
                model = build_model(
                    config.preset, backbone=config.backbone, weights=config.weights,
                    backbone_kwargs=config.backbone_kwargs, kernels=config.kernels, **config.model_overrides(),
                    image_size=size, channels=config.channels, classes=len(manifest.classes),
                )
                compile_model(model, config.learning_rate, config.backbone_multiplier)
        _check_k_fits(model, train_source, config, size)

        steps_per_epoch = config.steps_per_epoch or math.ceil(len(train_source) / config.batch_size)
        # Several devices split each batch: validation batches then hold one bag per device, the
        # last one filled by repeating bags (a device with an empty batch fails in Keras/TF).
        val_data = make_dataset(val_source, False, image_size=size, channels=config.channels,
                                batch_size=replicas, pad_last=replicas > 1)
        callbacks = [
            RunCheckpoint(run_dir, config.checkpoint_steps, state),
            keras.callbacks.CSVLogger(os.path.join(run_dir, "log.csv"), append=True),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False),
            *callbacks,
        ]

        def train_data(start_step):
            return make_dataset(
                train_source, True, image_size=size, channels=config.channels, instances=config.instances,
                batch_size=config.batch_size, augment=config.augment, seed=config.seed, repeat=True,
                start_step=start_step,
            )

        if config.strategy == "multi_worker":
            from mims_tf.train.multi_worker import patch_keras_for_multi_worker

            patch_keras_for_multi_worker(model, strategy, train_data(0))
        step = _step(model)
        epoch, offset = divmod(step, steps_per_epoch)
        if offset and epoch < config.epochs:  # a run stopped mid-epoch: finish that epoch first
            model.fit(train_data(step), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - offset,
                      validation_data=val_data, callbacks=callbacks, verbose=verbose, shuffle=False)
            epoch += 1
        if epoch < config.epochs:
            model.fit(train_data(epoch * steps_per_epoch), initial_epoch=epoch, epochs=config.epochs,
                      steps_per_epoch=steps_per_epoch, validation_data=val_data, callbacks=callbacks, verbose=verbose, shuffle=False)
    finally:
        keras.config.set_dtype_policy("float32")
    summary = {"run": run_dir, "precision": precision, **state, "best_model": os.path.join(run_dir, "best.keras")}
    print(
        f"{config.preset}: best validation AUROC {state['best_val_auroc']:.4f} at epoch {state['best_epoch']}; "
        f"run folder {run_dir}",
        file=sys.stderr,
    )
    return summary


def _check_k_fits(model, source, config, size):
    """Fails early (one line) when top-k asks for more elements than the smallest bag gives."""
    counts = source.instance_counts()
    smallest = min(counts) if config.instances is None else (
        config.instances[0] if isinstance(config.instances, tuple) else config.instances
    )
    try:
        model(np.zeros((1, smallest, *size, config.channels), np.float32), training=False)  # eager: checks k
    except ValueError as error:
        message = str(error)
        if "needs at least k=" in message:
            raise ValueError(
                f"k={message.split('k=')[1].split()[0]} is larger than what a bag of {smallest} instance(s) gives: "
                + message[message.index("needs at least"):].split(". Use")[0]
            ) from None
        raise


def load_run(run_dir, which="best"):
    """Returns (model, config, manifest) of a run folder."""
    config_path = os.path.join(run_dir, "config.yaml")
    model_path = os.path.join(run_dir, f"{which}.keras")
    if not os.path.isfile(config_path):
        raise ValueError(f"{run_dir}: not a run folder (no config.yaml)")
    if not os.path.isfile(model_path):
        raise ValueError(f"{run_dir}: no {which}.keras (was the run trained for at least one epoch?)")
    config = load_config(config_path)
    manifest = read_manifest(os.path.join(run_dir, "manifest.csv"), classes=config.classes, check_files=False)
    return keras.saving.load_model(model_path, safe_mode=True), config, manifest


def run_source(config, manifest, split=None, skip_unreadable=False):
    """A `BagSource` that reads bags the way the run was trained (central slices, normalisation)."""
    return BagSource(manifest, split, central=config.central, normalize=config.normalize,
                     skip_unreadable=skip_unreadable, progress=False)


def unlabelled_source(config, classes, rows, skip_unreadable=False):
    """A `run_source` over unlabelled rows (dicts with `path`, optional `bag`), e.g. files to predict."""
    rows = [dict(row, label=classes[0], split="predict") for row in rows]
    return run_source(config, from_rows(rows, classes=classes), "predict", skip_unreadable)


def eval_batches(config, source, instances=None):
    """Every bag of `source` in order, sized as the run's model expects: whole, or `instances` sampled per bag."""
    return make_dataset(source, False, image_size=(config.image_size,) * 2, channels=config.channels,
                        instances=instances)


def sample_bags(config, manifest, count=2):
    """A few real bags of the test split (else any split) as float32 `(count, S, H, W, C)`, for export checks."""
    split = "test" if "test" in {row["split"] for row in manifest.rows} else None
    source = run_source(config, manifest, split)
    instances = config.instances[0] if isinstance(config.instances, tuple) else (config.instances or 4)
    data = make_dataset(source, True, image_size=(config.image_size,) * 2, channels=config.channels,
                        instances=instances, batch_size=count, augment=False, seed=0)
    return next(iter(data))[0].numpy()


def predict_bags(model, config, source, instances=None):
    """Class probabilities `(bags, classes)` for every bag of a `BagSource`, in order (see `eval_batches`)."""
    return model.predict(eval_batches(config, source, instances), verbose=0)

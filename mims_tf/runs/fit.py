"""Train a run, and resume it after a crash.

The global step is the optimizer's `iterations`, saved inside `last.keras`, so model, optimizer and data
position always agree: a resumed run restarts the data stream at that step (`make_dataset(start_step=...)`)
and ends bit-identical to an uninterrupted one.
"""

import logging
import math
import os

import keras
import numpy as np

from mims_tf.data.features import feature_dataset
from mims_tf.runs.checkpoint import EpochCSVLogger, RunCheckpoint, averaged_from, kept_model, step_of
from mims_tf.runs.environment import environment, fingerprint, make_deterministic
from mims_tf.runs.folder import NEW_STATE, RunFolder
from mims_tf.runs.inputs import (
    bag_source,
    build_manifest,
    cached_features,
    distributed_train_batches,
    eval_batches,
    feature_batches,
    train_batches,
)

logger = logging.getLogger("mims_tf")
SMALL_VALIDATION = 30  # fewer validation bags than this: a warning


# The settings a resumed run may change: everything else is the stored run's.
RESUMABLE = ("training.epochs", "out")


def resume_config(out, changes=None):
    """The stored config of the run in `out`, to resume it, with `changes` (a nested mapping of the values
    given now) applied; only the keys of `RESUMABLE` may change (the folder named now, more epochs)."""
    run = RunFolder(out)
    if not run.exists():
        raise ValueError(f"{out}: no run to resume (no config.yaml)")
    flat = _flat_keys(changes or {})
    refused = sorted(key for key in flat if key not in RESUMABLE)
    if refused:
        raise ValueError(f"{out}: a resumed run keeps its stored configuration; only {', '.join(RESUMABLE)} may "
                         f"change. Received: {', '.join(refused)}")
    config = run.config()
    config.out = os.fspath(out)  # the folder named now, not the path stored when the run began
    if "training.epochs" in flat:
        config.training.epochs = flat["training.epochs"]
        config.training.validate()
    return config


def _flat_keys(values, prefix=""):
    keys = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            keys.update(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys[prefix + key] = value
    return keys


def comparable_config(config, run):
    """The config as a resume compares it: paths relative to the run folder, without what a resume may change."""
    from mims_tf.runs.schema import relative_paths

    values = relative_paths(config.to_dict(), run.path)
    values.pop("out", None)
    values["training"].pop("epochs", None)
    return values


def _check_unchanged(run, config):
    """Refuses to resume a run whose config.yaml was edited since it started (the model in last.keras is the
    one it started with, whatever the file now says)."""
    started = run.state().get("config")
    if not isinstance(started, dict):  # a run from before this record: nothing to compare
        return
    now = comparable_config(config, run)
    changed = sorted(key for key in set(_flat_keys(started)) | set(_flat_keys(now))
                     if _flat_keys(started).get(key) != _flat_keys(now).get(key))
    if changed:
        key, more = changed[0], f", and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise ValueError(f"{run.config_path}: edited since the run started ({key}: {_flat_keys(started).get(key)!r} "
                         f"then, {_flat_keys(now).get(key)!r} now{more}); a resumed run trains the model it started "
                         "with: restore the file, or train a new run")


def prepare_run_folder(config, resume=False, overwrite=False):
    """`(config, resuming)`: the stored config when resuming (only `epochs` may grow), else `config`
    written into a new (or emptied) run folder with its resolved precision."""
    run = RunFolder(config.out)
    if run.exists():
        if resume:
            done = run.state()["epochs_done"]
            if not os.path.exists(run.model_path("last")) and (done or os.path.exists(run.model_path("best"))):
                raise ValueError(f"{run.model_path('last')}: missing, so the run cannot go on where it stopped "
                                 f"(after {done} epoch(s)); restore the file, or train again in a new or overwritten "
                                 "folder")
            stored = run.config()
            _check_unchanged(run, stored)
            stored.out = config.out  # the folder named now (it may have moved, or be named from elsewhere)
            if config.training.epochs != stored.training.epochs:  # the one setting a resumed run may change
                stored.training.epochs = config.training.epochs
                run.save_config(stored)
            return stored, True
        if not overwrite:
            raise ValueError(f"{run.path}: holds another run (config.yaml); resume it or overwrite it")
        foreign = [n for n in run.contents() if not run.is_run_file(n)]
        if foreign:  # overwrite replaces a run, never a folder of other files that holds a config.yaml
            raise ValueError(f"{run.path}: holds files that are not a run's ({', '.join(sorted(foreign)[:5])}); "
                             "overwrite replaces a run folder only: choose another output folder")
        run.empty()
    elif resume:
        raise ValueError(f"{run.path}: no run to resume (no config.yaml)")
    elif run.contents() and not overwrite:
        raise ValueError(f"{run.path}: folder is not empty; overwrite it or choose another output folder")
    elif run.contents():  # overwrite replaces a run; a folder without config.yaml holds no run of ours
        shown = ", ".join(sorted(run.contents())[:5])
        raise ValueError(f"{run.path}: holds files but no run (no config.yaml; {shown}); overwrite replaces a run "
                         "folder only: choose another output folder")
    os.makedirs(run.path, exist_ok=True)
    config.precision = config.resolved_precision()
    run.save_config(config)
    return config, False


def train(config, resume=False, overwrite=False, verbose="auto", callbacks=()):
    """Trains as `config` says, in the run folder `config.out`; returns a summary dict.

    The run folder is locked for the process's life (a second training in it is refused). A start that
    fails before the first step (bad data, a model that cannot be built) leaves a new folder as it was,
    so the corrected command runs. A loss that turns NaN stops training with a `RuntimeError`, keeping
    the last good checkpoints.

    With `config.training.folds`, trains that many folds as one cross-validated run (`mims_tf.runs.cv`).

    Args:
        config: a `RunConfig`.
        resume: continue the run in `config.out` (its stored config; `training.epochs` may grow).
        overwrite: replace the run in `config.out`.
        verbose: Keras progress output (`"auto"`, 0, 1, 2).
        callbacks: extra Keras callbacks, run after the run's own.

    Returns:
        `{"run", "precision", "replicas", "best_val_auroc", "best_epoch", "epochs_done", "best_model",
        "decision"}`.
    """
    if config.training.folds:  # cross-validation: K runs in one parent run (`mims_tf.runs.cv`)
        from mims_tf.runs.cv import train_folds

        return train_folds(config, resume, overwrite, verbose, callbacks)
    run = RunFolder(config.out)
    fresh = not run.contents()
    with run.lock():
        try:
            config, resuming, model, fit_setup = _set_up(config, resume, overwrite, callbacks, verbose)
        except BaseException:
            if fresh and not resume:
                run.empty()
            raise
        return _fit(config, resuming, model, **fit_setup)


def _set_up(config, resume, overwrite, callbacks, verbose):
    from mims_tf.models import build_model
    from mims_tf.train import compile_model
    from mims_tf.train.strategy import get_strategy

    config, resuming = prepare_run_folder(config, resume, overwrite)
    run = RunFolder(config.out)
    if config.deterministic:
        make_deterministic()
    strategy = get_strategy(config.strategy)  # before anything starts TensorFlow's runtime (multi-worker needs it)
    record_environment(run)
    keras.utils.set_random_seed(config.seed)
    if resuming and os.path.exists(run.manifest_path):
        manifest = run.manifest(config.data.classes)
    else:
        manifest = build_manifest(config, run.path).check_trainable()
        run.save_manifest(manifest)
        _warn_shared_content(manifest)
    train_source = bag_source(config, manifest, "train", progress=True)
    val_source = bag_source(config, manifest, "val", progress=True)
    state = run.state() if resuming else dict(NEW_STATE, config=comparable_config(config, run))
    if not resuming:
        run.save_state(state)  # the configuration it starts with: a resume refuses one edited since
    counts = train_source.known_instance_counts()
    if counts and not resuming:  # what predict compares new bags with
        state["training_instances"] = [min(counts), max(counts)]
    with strategy.scope():
        if resuming and os.path.exists(run.model_path("last")):
            model = run.load_model("last")
        else:
            model = build_model(config.model_config(len(manifest.classes)), dtype=config.precision)
            compile_model(model, config.training.learning_rate, config.training.backbone_multiplier)
    _check_k_fits(model, train_source, config)
    if not os.path.isfile(run.contract_path):  # what every bag scored later is checked against
        from mims_tf.data.contract import describe_contract
        from mims_tf.runs.contract import record_contract

        logger.info("input contract: %s", describe_contract(record_contract(run, config, manifest)))
    if config.task:
        from mims_tf.runs.schema import TASKS

        def in_effect(block, key):  # after the options given over the task's
            value = config.model.get(key) if block == "model" else getattr(getattr(config, block), key)
            return list(value) if isinstance(value, tuple) else value

        logger.info("task %s, the paper's settings under the ones given; in effect: %s", config.task, "; ".join(
            f"{block}: " + ", ".join(f"{key} {in_effect(block, key)!r}" + ("" if in_effect(block, key) == value else
                                     f" (task: {value!r})") for key, value in settings.items())
            for block, settings in TASKS[config.task].items()))
    for name, source in (("training", train_source), ("validation", val_source)):
        logger.info("%s bags kept: %s (%s)", name, source.mode, source.reason)
    logger.info("classes: %s (positive class: %s); %d training and %d validation bags",
                ", ".join(manifest.classes), manifest.classes[-1], len(train_source), len(val_source))
    if len(val_source) < SMALL_VALIDATION:
        logger.warning("only %d validation bags: validation AUROC moves in steps of about 1/%d, the best epoch and "
                       "the threshold chosen on it are rough", len(val_source), len(val_source))
    replicas = strategy.num_replicas_in_sync
    steps_per_epoch = config.training.steps_per_epoch or math.ceil(len(train_source) / config.training.batch_size)
    # Several devices split each batch: validation batches then hold one bag per device, the
    # last one filled by repeating bags (a device with an empty batch fails in Keras/TF).
    if replicas > 1 and len(set(val_source.instance_counts())) > 1:
        raise ValueError(f"strategy {config.strategy!r} splits each validation batch over {replicas} devices, but "
                         "validation bags differ in size: use strategy 'none'")
    if config.strategy == "multi_worker" and config.training.batch_size % replicas:
        raise ValueError(f"strategy 'multi_worker' splits each batch of {config.training.batch_size} bags over "
                         f"{replicas} devices: the batch size must be a multiple of {replicas}")
    finished = resuming and state.get("epochs_done", 0) >= config.training.epochs
    features = None if finished else cached_features(config, model, train_source, val_source,
                                                     len(manifest.classes), steps_per_epoch)
    if features:  # bags of one size go 32 to a batch: an epoch of the head is mostly steps' fixed cost
        val_data = feature_dataset(features["val"], False,
                                   batch_size=32 if len(set(val_source.instance_counts())) == 1 else 1)
    else:
        val_data = eval_batches(config, val_source, batch_size=replicas, pad_last=replicas > 1)
    average = averaged_from(config.training.epochs) if kept_model(config.training) == "average_last" else None
    checkpoint = RunCheckpoint(run, config.training.checkpoint_steps, state, steps_per_epoch,
                               saved_model=model if features else None, average_from=average)
    return config, resuming, model, dict(
        run=run, strategy=strategy, train_source=train_source, val_data=val_data, checkpoint=checkpoint,
        callbacks=callbacks, verbose=verbose, steps_per_epoch=steps_per_epoch, features=features)


def _fit(config, resuming, model, run, strategy, train_source, val_data, checkpoint, callbacks, verbose,
         steps_per_epoch, features):
    training = config.training
    trained = features["head"] if features else model  # the model itself, or its head on cached features
    replicas = strategy.num_replicas_in_sync
    callbacks = [
        checkpoint,
        EpochCSVLogger(run.log_path, append=True),
        keras.callbacks.TensorBoard(run.tensorboard_dir, write_graph=False),
        *callbacks,
    ]
    shards = []
    if config.strategy == "multi_worker":
        from mims_tf.train.multi_worker import patch_keras_for_multi_worker

        patch_keras_for_multi_worker(model, strategy, train_batches(config, train_source))

    def batches(start_step):
        if features:
            return feature_batches(config, features["train"], start_step)
        if config.strategy != "multi_worker":
            return train_batches(config, train_source, start_step)
        dataset, pipelines = distributed_train_batches(config, train_source, strategy, start_step)
        shards.append(pipelines)
        return dataset

    step = step_of(model)
    epoch, offset = divmod(step, steps_per_epoch)
    fit = dict(validation_data=val_data, callbacks=callbacks, verbose=verbose, shuffle=False)
    if offset and epoch < training.epochs:  # a run stopped mid-epoch: finish that epoch first
        trained.fit(batches(step), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - offset,
                    **fit)
        epoch += 1
    if epoch < training.epochs and not checkpoint.nan_step:
        trained.fit(batches(epoch * steps_per_epoch), initial_epoch=epoch, epochs=training.epochs,
                  steps_per_epoch=steps_per_epoch, **fit)
    state = checkpoint.state
    if checkpoint.nan_step:
        kept = (f"last.keras / best.keras hold the last good checkpoint (epoch {state['epochs_done']})"
                if os.path.exists(run.model_path("last")) else "no checkpoint had been saved yet")
        raise RuntimeError(
            f"{run.path}: the training loss became NaN at step {checkpoint.nan_step}; training stopped, and "
            f"{kept}. A lower learning rate (now {training.learning_rate:g}) usually helps"
        )
    decision = _calibrate(run, config)
    # the exact AUROC of the best model as every path scores it (training's per-epoch figure is bucketed)
    exact = decision.get("val_auroc") if decision else None
    averaged = state.get("averaged")
    if averaged and exact is not None:  # best.keras is a mean of epochs: its own AUROC
        state["best_val_auroc"] = exact
        run.save_state(state)
    kept = f"best epoch {state['best_epoch']}"
    if averaged:
        kept = (f"the mean of epochs {averaged['from']}-{state['best_epoch']}" if averaged["epochs"] > 1 else
                f"epoch {state['best_epoch']} (the averaged epochs' window holds one)")
    logger.info("%s: %s, validation AUROC %.4f; run folder %s", config.preset, kept,
                state["best_val_auroc"] if exact is None else exact, run.path)
    data_shards = sorted({shard for pipelines in shards for shard in pipelines})
    return {"run": run.path, "precision": config.precision, "replicas": replicas, "data_shards": data_shards, **state,
            "best_val_auroc_exact": exact, "best_model": run.model_path("best"), "decision": decision,
            "environment": fingerprint(environment())}


def _warn_shared_content(manifest):
    """A warning where one image is in two splits (a copy, or a duplicate a published set ships with)."""
    from mims_tf.data.splits import shared_content

    groups = shared_content(manifest)
    if groups:
        example = " = ".join(f"{path} ({split})" for split, path in groups[0])
        logger.warning("%d image(s) appear in more than one split, byte for byte (e.g. %s): the model may be tested "
                       "on what it trained on; remove the copies for a clean split", len(groups), example)


def record_environment(run):
    """Appends this process's `environment()` to `<run>/environment.json` (one entry per start or resume)."""
    from mims_tf.utils import read_json, write_json

    path = run.environment_path
    sessions = []
    if os.path.isfile(path):
        sessions = read_json(path, {"sessions": list}).get("sessions") or []
    info = environment()
    write_json(path, {"sessions": [*sessions, info]})
    return info


def _calibrate(run, config):
    """The temperature and threshold of the best model, chosen on validation (None where it cannot be)."""
    from mims_tf.data import DataError
    from mims_tf.runs.decision import calibrate_run

    if not os.path.isfile(run.model_path("best")):
        return None
    try:
        decision = calibrate_run(run, "best")
    except DataError as error:
        logger.warning("no calibration or threshold: %s", error)
        return None
    threshold = decision["threshold"]
    d = decision
    point = "" if threshold is None else (
        f"; on validation: sensitivity {d['val_sensitivity']:.2f} (95 % CI {d['val_sensitivity_low']:.2f}-"
        f"{d['val_sensitivity_high']:.2f}), specificity {d['val_specificity']:.2f} (95 % CI "
        f"{d['val_specificity_low']:.2f}-{d['val_specificity_high']:.2f})")
    logger.info("calibration on %d validation bags: temperature %.3f; threshold %s (%s)%s%s", decision["val_bags"],
                decision["temperature"], "-" if threshold is None else f"{threshold:.3f}", decision["threshold_from"],
                point, "" if decision["reliable"] else f"; unreliable: {decision['why']}")
    return decision


def _check_k_fits(model, source, config):
    """Fails early (one line) when top-k asks for more elements than the smallest bag gives."""
    instances = config.data.instances
    if instances is None:
        smallest = min(source.instance_counts())
    else:
        smallest = instances[0] if isinstance(instances, tuple) else instances
    try:
        model(np.zeros((1, smallest, *config.data.image_size, config.data.channels), np.float32), training=False)
    except ValueError as error:
        message = str(error)
        if "needs at least k=" in message:
            raise ValueError(
                f"k={message.split('k=')[1].split()[0]} is larger than what a bag of {smallest} instance(s) gives: "
                + message[message.index("needs at least"):].split(". Use")[0]
            ) from None
        raise

"""From the run's data block to bags: the manifest of a new run, and bag sources, batches and cached backbone
features read the way the run was trained (central slices, normalisation, image size, channels)."""

import logging
import os

from mims_tf.data import (
    BagSource,
    assign_splits,
    from_class_folders,
    from_medmnist,
    from_rows,
    make_dataset,
    read_manifest,
)
from mims_tf.data.synthetic import write_dataset
from mims_tf.utils import Progress

logger = logging.getLogger("mims_tf")


def build_manifest(config, run_dir):
    """The manifest named by `config.data.source`, with splits (assigned by bag where missing)."""
    data = config.data
    source = data.source
    if source == "synthetic":
        path = write_dataset(os.path.join(run_dir, "data"), seed=config.seed, instances=16, size=64)
        manifest = from_medmnist(path, classes=data.classes)
    elif source.lower().endswith(".csv"):
        manifest = read_manifest(source, classes=data.classes, **_groups(data))
    elif source.lower().endswith(".npz"):
        manifest = from_medmnist(source, classes=data.classes)
    elif os.path.isdir(source):
        manifest = from_class_folders(source, bag_pattern=data.bag_pattern, classes=data.classes,
                                      one_bag_per_file=data.one_bag_per_file)
    else:
        raise ValueError(
            f"{source}: the data source must be a manifest .csv, a MedMNIST-style .npz, a folder of class "
            "folders, or 'synthetic'"
        )
    if any(not row["split"] for row in manifest.rows):
        manifest = assign_splits(manifest, data.split_fractions, seed=data.split_seed, **_groups(data))
    return manifest


def _groups(data):
    return {"allow_shared_groups": data.allow_shared_groups, "group_pattern": data.group_pattern}


def bag_source(config, manifest, split=None, skip_unreadable=False, progress=False):
    """A `BagSource` that reads bags the way the run was trained (central slices, normalisation, resized to
    the model's input before they are kept), kept as the run's data block says (`cache`, `memory_budget_gb`,
    `cache_dir`). Every path that scores a bag reads it through here, so all give the same probabilities."""
    data = config.data
    budget = None if data.memory_budget_gb is None else int(data.memory_budget_gb * 1e9)
    return BagSource(manifest, split, central=data.central, normalize=data.normalize,
                     skip_unreadable=skip_unreadable, progress=progress, cache=data.cache, memory_budget=budget,
                     cache_dir=data.cache_dir, image_size=data.image_size)


def unlabelled_source(config, classes, rows, skip_unreadable=False):
    """A `bag_source` over unlabelled rows (dicts with `path`, optional `bag`), e.g. files to predict: read
    exactly as evaluation reads a bag, so both give the same probabilities."""
    rows = [dict(row, label=classes[0], split="predict") for row in rows]
    return bag_source(config, from_rows(rows, classes=classes), "predict", skip_unreadable)


def eval_batches(config, source, instances=None, batch_size=1, pad_last=False, seed=0):
    """Every bag of `source` in order, sized as the run's model expects: whole, or `instances` sampled per bag
    (the same instances for the same `seed`)."""
    return make_dataset(source, False, image_size=config.data.image_size, channels=config.data.channels,
                        instances=instances, batch_size=batch_size, pad_last=pad_last, seed=seed,
                        replacement=config.data.replacement)


def train_batches(config, source, start_step=0, shard=None, batch_size=None):
    """The endless, shuffled, augmented training stream of the run, from global step `start_step`; with `shard`
    `(index, count)`, this reader's share of it in batches of `batch_size` (see `make_dataset`)."""
    data = config.data
    return make_dataset(
        source, True, image_size=data.image_size, channels=data.channels, instances=data.instances,
        batch_size=batch_size or config.training.batch_size, augment=data.augment, seed=config.seed, repeat=True,
        start_step=start_step, replacement=data.replacement, shard=shard,
    )


def cached_features(config, model, train_source, val_source, classes, steps_per_epoch):
    """With a frozen backbone: `{"head", "train", "val"}`, the model's head (sharing its layers, compiled with its
    optimizer) and the `FeatureStore`s it trains on; None where the run trains on images (logged why): no cache
    asked for, a distributed strategy, features over the memory budget with no cache folder, or (without a cache
    folder, whose features later runs reuse) an extraction that would run the backbone more often than the
    whole training on images does (big bags sampled thinly, few epochs)."""
    from mims_tf.data.features import extract_features
    from mims_tf.models import split_model
    from mims_tf.train import BagAUROC

    model_config = config.model_config(classes)
    views = config.training.feature_views if config.data.augment else min(config.training.feature_views, 1)
    if not model_config.freeze_backbone:
        return None
    if not views:
        logger.info("frozen backbone, no feature cache (feature_views 0): the backbone runs at every step")
        return None
    if config.strategy != "none":
        logger.info("frozen backbone: no feature cache under strategy %r; the backbone runs at every step",
                    config.strategy)
        return None
    extraction = views * sum(train_source.instance_counts()) + sum(val_source.instance_counts())
    instances = config.data.instances
    per_bag = (sum(instances) / 2 if isinstance(instances, tuple) else instances) or (
        sum(train_source.instance_counts()) / len(train_source))
    on_images = config.training.epochs * (steps_per_epoch * config.training.batch_size * per_bag
                                          + sum(val_source.instance_counts()))
    if extraction > on_images and not config.data.cache_dir:  # a cache folder's features serve later runs too
        logger.info("frozen backbone, no feature cache: extracting %d views of every instance (%d backbone passes) "
                    "costs more than training on images (about %d); the backbone runs at every step", views,
                    extraction, on_images)
        return None
    extractor, head = split_model(model, model_config)
    identity = {key: getattr(model_config, key) for key in (
        "backbone", "backbone_kwargs", "feature_layers", "pyramid_scales", "image_size", "channels")}
    identity["precision"] = config.precision
    data = config.data
    budget = None if data.memory_budget_gb is None else int(data.memory_budget_gb * 1e9)
    stores = {}
    for split, source, count in (("train", train_source, views), ("val", val_source, 1)):
        stores[split] = extract_features(extractor, source, data.image_size, data.channels, views=count,
                                         seed=config.seed, identity=identity, cache_dir=data.cache_dir,
                                         memory_budget=budget, what={"train": "training", "val": "validation"}[split])
        if budget is not None and stores[split] is not None and stores[split].stacked is not None:
            budget -= 2 * sum(a.nbytes for a in stores[split].stacked)  # what is left for the next split
        if stores[split] is None:
            logger.info("frozen backbone: the %s features do not fit the memory budget and no cache folder is set; "
                        "the backbone runs at every step", split)
            return None
        logger.info("%s features kept: %s (%s)", split, stores[split].mode, stores[split].reason)
    head.compile(optimizer=model.optimizer, loss=model.loss, metrics=[BagAUROC(classes)])
    return {"head": head, **stores}


def feature_batches(config, store, start_step=0):
    """`train_batches` of the run's head on cached features (`cached_features`), from global step `start_step`."""
    from mims_tf.data.features import feature_dataset

    data = config.data
    return feature_dataset(store, True, instances=data.instances, batch_size=config.training.batch_size,
                           seed=config.seed, repeat=True, start_step=start_step, replacement=data.replacement)


def distributed_train_batches(config, source, strategy, start_step=0):
    """`train_batches` for a multi-worker strategy: each worker reads only its shard of every epoch.

    Returns `(distributed dataset, shards)`: `shards` fills with the `(index, count)` each input pipeline of
    this process was given once the dataset is built.
    """
    shards = []

    def per_worker(context):
        shard = (context.input_pipeline_id, context.num_input_pipelines)
        shards.append(shard)
        batch = context.get_per_replica_batch_size(config.training.batch_size)
        return train_batches(config, source, start_step, shard=shard, batch_size=batch)

    return strategy.distribute_datasets_from_function(per_worker), shards


def sample_bags(config, manifest, count=2):
    """A few real bags of the test split (else any split) as float32 `(count, S, H, W, C)`, for export checks."""
    split = "test" if "test" in {row["split"] for row in manifest.rows} else None
    source = bag_source(config, manifest, split)
    instances = config.data.instances
    instances = instances[0] if isinstance(instances, tuple) else (instances or 4)
    data = make_dataset(source, True, image_size=config.data.image_size, channels=config.data.channels,
                        instances=instances, batch_size=count, augment=False, seed=0)
    return next(iter(data))[0].numpy()


def predict_bags(model, config, source, instances=None):
    """Class probabilities `(bags, classes)` for every bag of a `BagSource`, in order (see `eval_batches`);
    progress goes to the `mims_tf` logger (`mims_tf.utils.Progress`)."""
    import keras

    progress = Progress(f"scoring {len(source)} bags", len(source))

    class Report(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            progress.advance()

    return model.predict(eval_batches(config, source, instances), verbose=0, callbacks=[Report()])

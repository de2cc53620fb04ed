"""From the run's data block to bags: the manifest of a new run, and bag sources and batches read the way
the run was trained (central slices, normalisation, image size, channels)."""

import os

from mims_tf.data import BagSource, assign_splits, from_class_folders, from_medmnist, from_rows, make_dataset
from mims_tf.data import read_manifest
from mims_tf.data.synthetic import write_dataset
from mims_tf.utils import Progress


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

"""tf.data pipelines from a manifest to `(bags, labels)` batches for `model.fit`.

Training mode samples instances per bag (paper, OCT: a random 12 to 18 of the
30 central slices: `central=30, instances=(12, 18)`), resizes, normalises,
turns grayscale into 3 channels, and augments with stateless `tf.random` ops
seeded from the dataset (so a seed fixes order, sampling and augmentation).
Evaluation mode yields every bag whole, in manifest order.

Bags are read once up front by `BagSource` (which is also where bad files are
found, with a clear error or, with `skip_unreadable=True`, a report of what was
skipped) and kept in memory when `cache=True`: volumes as uint8 (8-bit sources)
or float16, before resizing.
"""

import logging
import warnings

import numpy as np

from mims_tf.data.errors import DataError
from mims_tf.data.readers import read_volume
from mims_tf.data.transforms import augment_bag, prepare_instances, sample_instances

logger = logging.getLogger("mims_tf")
# `make_dataset` shuffles by (seed, epoch) itself, so Keras's "`shuffle=True` ... will be ignored" warning on
# every `model.fit(dataset)` says nothing; it is silenced for exactly that message.
warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed, but will be ignored since the data `x` was "
                        r"provided as a tf.data.Dataset")

NORMALIZE = ("auto", "minmax", "none")


def normalize_volume(array, mode, path="<volume>"):
    """Maps a volume to [0, 255] (the models' input range).

    Args:
        mode: `"auto"` (uint8 kept as is, anything else per-volume min-max),
            `"minmax"` (per volume), `"none"` (values kept), or a window
            `(low, high)` clipped and scaled (e.g. CT `(-160, 240)`).
    """
    if isinstance(mode, (tuple, list)):
        low, high = (float(v) for v in mode)
        if not high > low:
            raise ValueError(f"A window needs high > low. Received: normalize={mode}")
        return ((np.clip(array.astype(np.float32), low, high) - low) * (255.0 / (high - low))).astype(np.float32)
    if mode not in NORMALIZE:
        raise ValueError(f"`normalize` must be one of {NORMALIZE} or (low, high). Received: normalize={mode!r}")
    if mode == "none" or (mode == "auto" and array.dtype == np.uint8):
        return array
    low, high = float(array.min()), float(array.max())
    if high == low:
        return np.zeros(array.shape, np.float32)
    # float64 when the range itself would overflow float32 (e.g. -3e38 to 3e38)
    wide = high - low > float(np.finfo(np.float32).max)
    array = array.astype(np.float64 if wide else np.float32)
    return ((array - low) * (255.0 / (high - low))).astype(np.float32)


def central_slices(array, central):
    """The `central` middle instances (all if None or fewer)."""
    if central is None or len(array) <= central:
        return array
    start = (len(array) - central) // 2
    return array[start : start + central]


class BagSource:
    """Reads the bags of one split: each bag's rows concatenated to `(S, H, W, C)`.

    Args:
        manifest: a `Manifest`.
        split: the split to read (None: all rows).
        central: keep only the central this-many instances of each file.
        normalize: see `normalize_volume`.
        cache: keep every bag in memory (read once, up front).
        skip_unreadable: drop bags with unreadable files instead of failing;
            `skipped` lists `(path, reason)` and a summary goes to the `mims_tf` logger.
        progress: log progress while reading (the `mims_tf` logger).
    """

    def __init__(self, manifest, split=None, central=None, normalize="auto", cache=True,
                 skip_unreadable=False, progress=True):
        if central is not None and (not isinstance(central, int) or central < 1):
            raise ValueError(f"`central` must be a positive integer or None. Received: central={central!r}")
        normalize_volume(np.zeros((1, 1, 1), np.uint8), normalize)  # validates the option
        self.manifest = manifest
        self.split = split
        self.central = central
        self.normalize = normalize
        self.cache = cache
        self.skipped = []
        bags = manifest.bags(split)
        self._arrays = []
        self.bags = []
        for number, bag in enumerate(bags, start=1):
            if progress and (number % 200 == 0 or number == len(bags)) and len(bags) >= 200:
                logger.info("reading %s bags: %d/%d", split or "all", number, len(bags))
            if not cache and not skip_unreadable:
                self.bags.append(bag)
                continue
            try:
                array = self._read(bag)
            except DataError as error:
                if not skip_unreadable:
                    raise
                self.skipped.append((error.path, error.reason))
                continue
            self.bags.append(bag)
            if cache:
                self._arrays.append(array)
        if self.skipped:
            names = "; ".join(f"{p} ({r})" for p, r in self.skipped[:10])
            more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            logger.warning("skipped %d unreadable file(s): %s%s", len(self.skipped), names, more)
        if not self.bags:
            raise DataError(manifest.source, f"no readable bags in split {split!r}")

    def _read(self, bag):
        parts = []
        for path in bag.paths:
            array = read_volume(path).array
            if array.ndim == 3:
                array = array[..., None]
            array = central_slices(normalize_volume(array, self.normalize, path), self.central)
            parts.append(array)
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise DataError(bag.paths[0], f"bag {bag.bag!r} mixes instance shapes {sorted(shapes)}")
        array = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return array if array.dtype == np.uint8 else array.astype(np.float16)

    def __len__(self):
        return len(self.bags)

    @property
    def labels(self):
        return np.array([bag.label for bag in self.bags], dtype=np.int32)

    def load(self, index):
        """Returns bag `index` as float32 `(S, H, W, C)` in [0, 255]."""
        array = self._arrays[index] if self.cache else self._read(self.bags[index])
        return array.astype(np.float32)

    def instance_counts(self):
        """Instances per bag (reads the files when not cached)."""
        return [len(self._arrays[i]) if self.cache else len(self._read(b)) for i, b in enumerate(self.bags)]


def make_dataset(source, training, image_size=(224, 224), channels=3, instances=None, batch_size=1,
                 augment=True, seed=0, repeat=False, start_step=0, pad_last=False, replacement=False):
    """A `tf.data.Dataset` of `(bags, labels)`: float32 `(B, S, H, W, C)` in [0, 255], int32 `(B,)`.

    Args:
        source: a `BagSource`.
        training: sample instances, shuffle and augment (else every bag whole, in order).
        image_size: `(H, W)` every instance is resized to (bilinear).
        channels: 3 (grayscale repeated; for ImageNet backbones) or 1 (RGB averaged).
        instances: in training, instances sampled per bag per step: an int, a
            range `(low, high)` drawn per step (needs `batch_size=1`), or None for
            all (bags must then be the same size to batch). In evaluation, an int
            samples that many instances of each bag once (fixed by `seed` and the
            bag: test bags the size of training bags), None keeps every bag whole.
            A bag with fewer instances keeps the ones it has (each once), unless
            `replacement`; in training, bags of different sizes then go into
            batches of one size each (the same bags, in a deterministic order).
        batch_size: bags per batch. In evaluation, bags of different sizes need 1.
        augment: training only: random left-right flip of a bag and a random
            brightness / contrast change, the same for every instance of a bag.
        seed: fixes shuffling, sampling and augmentation.
        repeat: training only: an endless stream of epochs (use `steps_per_epoch`).
        start_step: with `repeat`, begin after this many batches (resuming a run
            at its data position: the batches are the ones an uninterrupted run sees).
        pad_last: evaluation only: fill the last batch by repeating bags, so every
            batch is full (needed to split batches over several devices).
        replacement: sample bags smaller than `instances` with replacement, to
            `instances` (copies of instances), as mims-tf 0.1 did.

    Each bag goes through `sample_instances`, `prepare_instances` and, in
    training, `augment_bag` (`mims_tf.data.transforms`), with the stateless seed
    pair `(seed * 1_000_003 + epoch, bag index)` in training (epochs count from 1)
    and `(seed, bag index)` in evaluation.
    """
    import tensorflow as tf

    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    if isinstance(instances, (tuple, list)):
        low, high = instances
        if not 1 <= low <= high:
            raise ValueError(f"`instances` range needs 1 <= low <= high. Received: instances={instances}")
        if batch_size != 1:
            raise ValueError(f"A range of instances per step needs batch_size=1. Received: instances={instances}, batch_size={batch_size}")
        if not training:
            raise ValueError(f"Evaluation samples a fixed number of instances: an int or None. Received: instances={instances}")
    elif instances is not None and (not isinstance(instances, int) or instances < 1):
        raise ValueError(f"`instances` must be a positive int, a (low, high) range or None. Received: instances={instances!r}")
    if instances is None and batch_size > 1 and len(set(source.instance_counts())) > 1:
        raise ValueError(
            "Bags have different numbers of instances, so they cannot be batched whole: use batch_size=1"
            + (" or set `instances`" if training else "") + f". Received: batch_size={batch_size}"
        )
    if (not training and isinstance(instances, int) and not replacement and batch_size > 1
            and min(source.instance_counts()) < instances):
        raise ValueError(
            f"Some bags have fewer than {instances} instances and keep their own size, so they cannot be batched: "
            f"use batch_size=1 or replacement=True. Received: batch_size={batch_size}"
        )
    labels = tf.constant(source.labels)

    def load(index):
        array = tf.numpy_function(lambda i: source.load(int(i)), [index], tf.float32, stateful=False)
        return tf.ensure_shape(array, [None, None, None, None])

    def eval_map(index):
        x = load(index)
        if instances is not None:
            x = sample_instances(x, instances, tf.stack([tf.constant(seed, tf.int64), index]), replacement)
        return prepare_instances(x, image_size, channels), labels[index]

    if training:
        count = len(source)

        def epoch_order(current):
            order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), [seed, current])
            return tf.data.Dataset.from_tensor_slices(order).map(lambda i: (i, current))

        def train_map(index, current):
            seed_pair = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + current, index])
            x = sample_instances(load(index), instances, seed_pair, replacement)
            x = prepare_instances(x, image_size, channels)
            if augment:
                x = augment_bag(x, seed_pair)
            return x, labels[index]

        # Bags smaller than `instances` keep their own size: batches then group bags of one size.
        ragged = (isinstance(instances, int) and not replacement and batch_size > 1
                  and min(source.instance_counts()) < instances)
        if repeat:
            # Epochs 1, 2, ... without end; `start_step` skips whole batches cheaply (before loading).
            order = tf.data.Dataset.range(1, 2**62).flat_map(epoch_order)
            if not ragged:
                order = order.skip(start_step * batch_size)
        else:
            # A counter bumped each time the dataset is iterated (each Keras epoch) makes the
            # shuffling and every random op a pure function of (seed, epoch, bag): the same
            # seed gives the same batches in every process, with no global seed. Epoch k here
            # equals epoch k of `repeat=True`.
            epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="mims_data_epoch")
            order = tf.data.Dataset.range(1).flat_map(lambda _: epoch_order(epoch.assign_add(1)))
        dataset = order.map(train_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if ragged:
            dataset = dataset.group_by_window(lambda x, y: tf.cast(tf.shape(x)[0], tf.int64),
                                              lambda _, window: window.batch(batch_size), window_size=batch_size)
            return (dataset.skip(start_step) if repeat else dataset).prefetch(tf.data.AUTOTUNE)
        if not repeat:
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))  # Keras knows the epoch length
    else:
        order = tf.data.Dataset.range(len(source))
        missing = -len(source) % batch_size
        if pad_last and missing:
            order = order.concatenate(tf.data.Dataset.range(len(source) - missing, len(source)))
        dataset = order.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

"""tf.data pipelines from a manifest to `(bags, labels)` batches for `model.fit`.

Training mode samples instances per bag (paper, OCT: a random 12 to 18 of the
30 central slices: `central=30, instances=(12, 18)`), resizes, normalises,
turns grayscale into 3 channels, and augments with stateless `tf.random` ops
seeded from the dataset (so a seed fixes order, sampling and augmentation).
Evaluation mode yields every bag whole, in manifest order.

Bags come from a `BagSource` (`mims_tf.data.source`): read and checked once up
front, and kept in memory, in a disk cache or read again each step, as its
memory budget allows.
"""

import warnings

from mims_tf.data.transforms import augment_bag, prepare_instances, sample_instances

# `make_dataset` shuffles by (seed, epoch) itself, so Keras's "`shuffle=True` ... will be ignored" warning on
# every `model.fit(dataset)` says nothing; it is silenced for exactly that message.
warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed, but will be ignored since the data `x` was "
                        r"provided as a tf.data.Dataset")

def make_dataset(source, training, image_size=(224, 224), channels=3, instances=None, batch_size=1,
                 augment=True, seed=0, repeat=False, start_step=0, pad_last=False, replacement=False, shard=None):
    """A `tf.data.Dataset` of `(bags, labels)`: float32 `(B, S, H, W, C)` in [0, 255], int32 `(B,)`.

    Args:
        source: a `BagSource`.
        training: sample instances, shuffle and augment (else every bag whole, in order).
        image_size: `(H, W)` every instance is resized to (bilinear).
        channels: 3 (grayscale repeated; for ImageNet backbones) or 1 (RGB averaged).
        instances: in training, instances sampled per bag per step: an int, a
            range `(low, high)` drawn per step (one count for the bags of a step), or None for
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
        shard: training only: `(index, count)`: this reader's share of every
            epoch, the bags at positions `index, index + count, ...` of the epoch's
            order. The order depends only on `seed` and the epoch, so `count`
            readers with one seed read disjoint shards that together hold every bag
            once per epoch (each worker of a multi-worker run reads only its own).
            `batch_size` is then this reader's batch.

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
        if not training:
            raise ValueError("Evaluation samples a fixed number of instances: an int or None. "
                             f"Received: instances={instances}")
    elif instances is not None and (not isinstance(instances, int) or instances < 1):
        raise ValueError("`instances` must be a positive int, a (low, high) range or None. "
                         f"Received: instances={instances!r}")
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
    if shard is not None:
        if not training:
            raise ValueError(f"`shard` splits training epochs; evaluation reads every bag. Received: shard={shard!r}")
        if (not isinstance(shard, (tuple, list)) or len(shard) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
                or not 0 <= shard[0] < shard[1]):
            raise ValueError(f"`shard` must be (index, count) with 0 <= index < count. Received: shard={shard!r}")
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
        def train_map(index, current, count):
            seed_pair = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + current, index])
            x = sample_instances(load(index), count, seed_pair, replacement)
            x = prepare_instances(x, image_size, channels)
            if augment:
                x = augment_bag(x, seed_pair)
            return x, labels[index]

        return training_stream(train_map, len(source), source.instance_counts, instances, batch_size, seed, repeat,
                               start_step, replacement, shard)

    order = tf.data.Dataset.range(len(source))
    missing = -len(source) % batch_size
    if pad_last and missing:
        order = order.concatenate(tf.data.Dataset.range(len(source) - missing, len(source)))
    dataset = order.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def training_stream(map_fn, bags, instance_counts, instances, batch_size, seed, repeat=False, start_step=0,
                    replacement=False, shard=None):
    """The training batches of `make_dataset`, for any per-bag map: the epochs' order, the epochs, resuming and
    batching. `mims_tf.data.features.feature_dataset` serves its features through it, so both streams give the
    same bags in the same batches.

    Args:
        map_fn: `(index, epoch, count)` to `(x, label)`: `index` and `epoch` int64 scalars (epochs count from
            1), `count` the instances to sample (`instances` itself, or with a range and `batch_size > 1` the
            int32 count drawn for the bag's step); `x` a bag: a tensor, or a tuple of tensors, whose first
            dimension is its instances.
        bags: the number of bags.
        instance_counts: a callable giving each bag's number of instances, called only where batching needs
            them (a source without an up-front pass reads its files to count).
        instances, batch_size, seed, repeat, start_step, replacement, shard: as `make_dataset`.

    Epoch `k` serves the bags in the order `stateless_shuffle(range(bags), [seed, k])` (with `shard`, this
    reader's share of it). Without `repeat`, each iteration of the dataset is the next epoch. A range of
    instances with `batch_size > 1` is drawn once per step (from the seed and the step), so a batch holds bags
    of one size (with `batch_size=1` the bag's own draw stays, as before). The step is counted over the whole
    stream with `repeat` (batches run on across epochs) and within the epoch without it, so these counts are the
    one draw in which an epoch without `repeat` differs from the same epoch with it.
    """
    import tensorflow as tf

    shard_length = bags if shard is None else len(range(shard[0], bags, shard[1]))
    per_step = isinstance(instances, (tuple, list)) and batch_size > 1
    if per_step and not replacement and min(instance_counts()) < instances[1]:
        raise ValueError(
            f"Some bags have fewer than {instances[1]} instances, so bags sampled {instances[0]} to {instances[1]} "
            f"a step cannot be batched: use batch_size=1 or replacement=True. Received: batch_size={batch_size}")

    def epoch_order(current):
        order = tf.random.experimental.stateless_shuffle(tf.range(bags, dtype=tf.int64), [seed, current])
        if shard is not None:
            order = order[shard[0]::shard[1]]
        # each bag's step: repeating, batches run on across epochs; else each epoch starts a batch
        position = tf.range(shard_length, dtype=tf.int64) + ((current - 1) * shard_length if repeat else 0)
        steps = position // batch_size
        return tf.data.Dataset.from_tensor_slices((order, steps)).map(lambda i, step: (i, current, step))

    def element(index, current, step):
        if not per_step:
            return map_fn(index, current, instances)
        # below the bags' own seed pairs (index >= 0), so no bag's draws repeat it
        step_seed = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + (0 if repeat else current), -1 - step])
        low, high = instances
        return map_fn(index, current, tf.random.stateless_uniform([], step_seed, low, high + 1, dtype=tf.int32))

    # Bags smaller than `instances` keep their own size: batches then group bags of one size.
    ragged = isinstance(instances, int) and not replacement and batch_size > 1 and min(instance_counts()) < instances
    if repeat:
        # Epochs 1, 2, ... without end; `start_step` skips whole batches cheaply (before loading).
        order = tf.data.Dataset.range(1, 2**62).flat_map(epoch_order)
        if not ragged:
            order = order.skip(start_step * batch_size)
    else:
        # A counter bumped each time the dataset is iterated (each Keras epoch) makes the
        # shuffling and every random op a pure function of (seed, epoch, bag): the same
        # seed gives the same batches in every process, with no global seed. Epoch k here
        # equals epoch k of `repeat=True` (but for a range's per-step counts: see above).
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="mims_data_epoch")
        order = tf.data.Dataset.range(1).flat_map(lambda _: epoch_order(epoch.assign_add(1)))
    dataset = order.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if ragged:
        dataset = dataset.group_by_window(lambda x, y: tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.int64),
                                          lambda _, window: window.batch(batch_size), window_size=batch_size)
        return (dataset.skip(start_step) if repeat else dataset).prefetch(tf.data.AUTOTUNE)
    if not repeat:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(shard_length))  # Keras knows the epoch length
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

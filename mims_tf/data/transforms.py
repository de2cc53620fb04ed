"""Per-bag TensorFlow transforms of `make_dataset`: instance sampling, resizing, augmentation.

Each function takes one bag `(S, H, W, C)` (a tensor or array) and, where it is
random, a stateless seed: a pair of integers `(2,)`, as `tf.random.stateless_*`
takes it. The same seed always gives the same result, in any process and with
no global seed. Each random draw uses its own offset of the seed, so the draws
are independent of one another:

| draw | seed |
|---|---|
| which instances (a shuffle of `range(S)`) | `seed` |
| how many, for a `(low, high)` range | `seed + 1` |
| which instances, with replacement (bags smaller than the count) | `seed + 2` |
| left-right flip | `seed + 3` |
| contrast factor | `seed + 4` |
| brightness shift | `seed + 5` |
| which cached feature view (`mims_tf.data.features`) | `seed + 6` |

TensorFlow is imported inside the functions, so importing `mims_tf.data` stays light.
"""

CONTRAST = (0.8, 1.2)
BRIGHTNESS = (-20.0, 20.0)
MID_GREY = 127.5


def _seed(seed):
    import tensorflow as tf

    return tf.cast(tf.convert_to_tensor(seed), tf.int64)


def instance_count(count, seed):
    """How many instances to sample: a scalar int32 tensor.

    Args:
        count: an int, a scalar int tensor, or a range `(low, high)` from which
            a count is drawn uniformly (both ends included) with `seed + 1`.
        seed: a stateless seed pair.
    """
    import tensorflow as tf

    if isinstance(count, (tuple, list)):
        low, high = count
        return tf.random.stateless_uniform([], _seed(seed) + 1, low, high + 1, dtype=tf.int32)
    return tf.cast(count, tf.int32) if tf.is_tensor(count) else tf.constant(count, tf.int32)


def sample_indices(total, count, seed):
    """The sorted int32 indices of the `count` instances kept out of `total`.

    With `total >= count`: the first `count` of a random permutation of
    `range(total)` (drawn with `seed`), so distinct instances; otherwise `count`
    indices drawn uniformly with replacement (with `seed + 2`). Either way the
    indices are sorted, so the kept instances stay in volume order.
    """
    import tensorflow as tf

    seed = _seed(seed)
    total = tf.cast(total, tf.int32)
    count = tf.cast(count, tf.int32)
    shuffled = tf.random.experimental.stateless_shuffle(tf.range(total), seed)
    with_replacement = tf.random.stateless_uniform([count], seed + 2, 0, total, dtype=tf.int32)
    index = tf.cond(total >= count, lambda: shuffled[:count], lambda: with_replacement)
    return tf.sort(index)


def sample_instances(bag, count, seed, replacement=False):
    """`count` instances of `bag` `(S, ...)`, at `sample_indices(S, count, seed)`.

    Args:
        bag: a bag `(S, H, W, C)` (any rank: instances along axis 0).
        count: None (the bag as it is), an int, a scalar int tensor, or a range
            `(low, high)` (see `instance_count`).
        seed: a stateless seed pair.
        replacement: where the bag has fewer than `count` instances, draw
            `count` with replacement (copies of instances); by default keep the
            bag's `S` instances (each once), so pooling sees what it sees at test.
    """
    import tensorflow as tf

    if count is None:
        return bag
    count = instance_count(count, seed)
    total = tf.shape(bag)[0]
    if not replacement:
        count = tf.minimum(count, total)
    return tf.gather(bag, sample_indices(total, count, seed))


def prepare_instances(bag, image_size, channels=3):
    """Resizes every instance to `image_size` `(H, W)` (bilinear) and sets the channels.

    `channels=3`: a grayscale bag is repeated to 3 channels, RGB(A) keeps its
    first 3; `channels=1`: the mean of the first 3 (or the one) channels.
    Returns float32 `(S, H, W, channels)`.
    """
    import tensorflow as tf

    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    height, width = image_size
    x = tf.image.resize(bag, (height, width), method="bilinear")
    depth = tf.shape(x)[-1]
    if channels == 3:
        x = tf.cond(tf.equal(depth, 1), lambda: tf.repeat(x, 3, axis=-1), lambda: x[..., :3])
    else:
        x = tf.reduce_mean(x[..., :3], axis=-1, keepdims=True)
    return tf.ensure_shape(x, [None, height, width, channels])


def augmentation_parameters(seed):
    """The random draws of `augment_bag`: `(flip, contrast, brightness)` scalar tensors.

    `flip` (bool) with probability 1/2 (`seed + 3`), `contrast` uniform in
    `CONTRAST` (`seed + 4`), `brightness` uniform in `BRIGHTNESS` (`seed + 5`).
    """
    import tensorflow as tf

    seed = _seed(seed)
    flip = tf.random.stateless_uniform([], seed + 3) < 0.5
    contrast = tf.random.stateless_uniform([], seed + 4, *CONTRAST)
    brightness = tf.random.stateless_uniform([], seed + 5, *BRIGHTNESS)
    return flip, contrast, brightness


def augment_bag(bag, seed):
    """Augments a float bag `(S, H, W, C)` in [0, 255], the same way for every instance.

    With the draws of `augmentation_parameters(seed)`: the bag is flipped left
    to right (along W) if `flip`, then `(x - 127.5) * contrast + 127.5 + brightness`
    is clipped to [0, 255]. Contrast is about mid-grey, not the bag mean: a
    parallel reduction is not bit-reproducible.
    """
    import tensorflow as tf

    flip, contrast, brightness = augmentation_parameters(seed)
    x = tf.cond(flip, lambda: tf.reverse(bag, axis=[2]), lambda: tf.convert_to_tensor(bag))
    return tf.clip_by_value((x - MID_GREY) * contrast + MID_GREY + brightness, 0.0, 255.0)

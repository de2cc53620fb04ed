"""The frozen-backbone fast path: the backbone's features of every bag computed once, then only the head trains.

With a frozen backbone (weights and batch-norm statistics as loaded) the backbone gives the same feature maps
for the same image at every epoch, so `extract_features` computes them once, for every feature map the model's
head reads (each feature layer at each pyramid level), and keeps them as float16; `feature_dataset` then feeds
the head (`mims_tf.models.split_model`) instead of the images. An epoch costs the head alone.

Augmentation and caching: each training bag is kept in `views` views, view 0 as it is and views 1 to
`views - 1` augmented (`mims_tf.data.transforms.augment_bag`, seeded by `(seed, view, bag)`). Every epoch each
bag is served in one of its views, drawn by `(seed, epoch, bag)`, and instances are sampled from that view as
`make_dataset` samples them from images (the same seeds, so the same instances). So the head still sees a
bag's instances in a new draw each epoch, and a flip / contrast / brightness change from a fixed set of
`views`: extraction costs `views` forward passes over the training set, once, instead of one forward and
backward pass per epoch. Validation and test bags have one view, as they are.

Where features are kept: in a cache folder when one is given (one memory-mapped `.npy` per feature map and
view, named by a key of the bags' contents as the model sees them, the backbone's weights, its settings and the
view's seed; later runs over the same data and backbone, e.g. the other presets of a table, reuse them), else
in memory when they fit the memory budget; else nowhere (`extract_features` returns None and the caller runs
the frozen backbone at every step). A cached file is checked before it is used (readable, size, shape, dtype,
finite values); a damaged one is removed, with one warning naming it, and its view extracted again.
"""

import hashlib
import os

import numpy as np

from mims_tf.data.cache import load_entry
from mims_tf.data.source import BUDGET_SHARE, available_memory, size_text
from mims_tf.utils import Progress, process_temporary, remove_orphans

EXTRACT_BATCH = 32  # instances per backbone call while extracting
FLOAT16_MAX = 65504.0
_KEY_VERSION = 2  # bump when what a cache file holds changes


def view_seed(seed, view):
    """The stateless seed's first element of augmented view `view` (>= 1) of every bag (second: the bag's index).

    Negative for seeds >= 0 (the runs' seeds), so never one of the training stream's `seed * 1_000_003 + epoch`
    (epochs count from 1).
    """
    return -(seed * 1_000_003 + view)


class FeatureStore:
    """The cached feature maps of every bag of one split, in `views` views.

    `arrays[view][map]` is float16 `(total instances, h, w, c)` (in memory or memory-mapped), the bags' instances
    one after another; `counts` gives each bag's instances. `load(index, view)` gives a bag's maps.
    """

    def __init__(self, arrays, counts, labels, mode, reason, stacked=None):
        self.arrays, self.mode, self.reason = arrays, mode, reason
        self.stacked = stacked  # in memory: one (views, total, h, w, c) array per map, `arrays` are its views
        self.counts = [int(c) for c in counts]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.labels = np.asarray(labels, dtype=np.int32)

    @property
    def views(self):
        return len(self.arrays)

    def __len__(self):
        return len(self.counts)

    def load(self, index, view=0):
        """Bag `index` in view `view`: one float32 `(S, h, w, c)` array per feature map."""
        start, stop = self.offsets[index], self.offsets[index + 1]
        return [np.asarray(array[start:stop], dtype=np.float32) for array in self.arrays[view]]

    def instance_counts(self):
        return list(self.counts)

    def map_shapes(self):
        """`(h, w, c)` of each feature map."""
        return [tuple(array.shape[1:]) for array in self.arrays[0]]


def extract_features(extractor, source, image_size, channels=3, views=1, seed=0, identity=None, cache_dir=None,
                     memory_budget=None, progress=True, what=None):
    """Runs `extractor` over every bag of `source` once per view; returns a `FeatureStore`, or None where the
    features fit neither the memory budget nor a cache folder.

    Args:
        extractor: the first half of `mims_tf.models.split_model` (bags to feature maps).
        source: a `BagSource` (bags as kept: cropped and resized).
        image_size: `(H, W)` the model takes (as `make_dataset`).
        channels: the model's input channels.
        views: 1 (the bags as they are) or more (views 1 and up augmented; see the module docstring).
        seed: the run's seed (fixes the augmented views).
        identity: what else fixes the features (backbone name and settings, dtype policy; JSON-friendly),
            part of the cache files' key with the bags' contents and the extractor's weights.
        cache_dir: a folder for the features (`<cache_dir>/features/`); None: in memory.
        memory_budget: bytes the features may take in memory (None: half the memory available).
        progress: report progress (`mims_tf.utils.Progress`).
        what: a name for the progress lines (e.g. "training").

    Returns:
        A `FeatureStore` (`mode` "memory" or "disk", `reason` says why), or None (see above).
    """
    import keras

    if not isinstance(views, int) or isinstance(views, bool) or views < 1:
        raise ValueError(f"`views` must be a positive integer. Received: views={views!r}")
    counts = source.instance_counts()
    total = int(sum(counts))
    height, width = image_size
    specs = extractor.compute_output_spec(keras.KerasTensor((1, 1, height, width, channels)))
    specs = specs if isinstance(specs, (list, tuple)) else [specs]
    shapes = [tuple(int(d) for d in spec.shape[2:]) for spec in specs]
    size = views * total * sum(int(np.prod(s)) for s in shapes) * 2
    text = f"{len(counts)} bags, {views} view(s), about {size_text(size)} as float16"
    if cache_dir:
        folder = os.path.join(os.path.expanduser(cache_dir), "features")
        mode, reason = "disk", f"{text}: in {folder} (shared by runs over the same data and backbone)"
        remove_orphans(folder)  # once per extraction, not per view: the folder holds a file per view and layer
    else:
        folder = None
        if memory_budget is None:
            available = available_memory()
            memory_budget = None if available is None else int(available * BUDGET_SHARE)
        if memory_budget is not None and 2 * size > memory_budget:  # the training stream holds a copy
            return None
        mode, reason = "memory", f"{text}, within the memory budget"
    keys = None
    if folder:
        base = _base_key(extractor, source, image_size, channels, identity)
        keys = [[hashlib.sha256(f"{base}/{view_seed(seed, v) if v else 0}/{m}".encode()).hexdigest()[:32]
                 for m in range(len(shapes))] for v in range(views)]
    stacked = None if folder else [np.empty((views, total, *shape), np.float16) for shape in shapes]
    arrays = []
    for view in range(views):
        paths = [os.path.join(folder, f"{key}.npy") for key in keys[view]] if folder else None
        cached = [_cached(path, total, shape) for path, shape in zip(paths, shapes)] if paths else [None]
        if all(array is not None for array in cached):
            arrays.append(cached)
            continue
        targets = paths or [array[view] for array in stacked]
        arrays.append(_extract_view(extractor, source, image_size, channels, view, seed, shapes, total, targets,
                                    progress, f"{what or source.split or 'all'} bags, view {view + 1} of {views}"))
    return FeatureStore(arrays, counts, source.labels, mode, reason, stacked)


def _cached(path, total, shape):
    """The feature map in cache file `path` (memory-mapped) where it is one of `total` instances of `shape` as
    float16, all finite; else None: no file, or a damaged one, removed (with one warning naming it) so its view
    is extracted again (`mims_tf.data.cache.load_entry`)."""
    def problem(array):
        if array.dtype != np.float16 or array.shape != (total, *shape):
            return f"{array.dtype} {array.shape}, not float16 {(total, *shape)}"
        return None

    return load_entry(path, problem, "feature cache file", "the features are extracted again")


def _base_key(extractor, source, image_size, channels, identity):
    """A key of what fixes every feature: the bags as kept (each one's shape and pixels, in order), the input
    size and channels, the extractor's weights and dtype policy, the augmentation, and the caller's `identity`."""
    from mims_tf.data import transforms

    settings = (_KEY_VERSION, identity, tuple(image_size), channels, len(source), extractor.dtype_policy.name,
                transforms.CONTRAST, transforms.BRIGHTNESS, transforms.MID_GREY)
    digest = hashlib.sha256(repr(settings).encode())
    for weight in extractor.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    for index in range(len(source)):
        bag = np.ascontiguousarray(source.load(index))
        digest.update(repr(bag.shape).encode())
        digest.update(bag.tobytes())
    return digest.hexdigest()


def _extract_view(extractor, source, image_size, channels, view, seed, shapes, total, targets, progress, what):
    """One view of every bag into `targets`: arrays to fill (in memory), or file paths to write (atomically,
    through a temporary file per process, so runs filling one cache folder at once do not collide)."""
    import tensorflow as tf

    from mims_tf.data.transforms import augment_bag, prepare_instances

    def bag(index):
        x = tf.numpy_function(lambda i: source.load(int(i)), [index], tf.float32, stateful=False)
        x = prepare_instances(tf.ensure_shape(x, [None, None, None, None]), image_size, channels)
        if view:
            x = augment_bag(x, tf.stack([tf.constant(view_seed(seed, view), tf.int64), index]))
        return x

    instances = tf.data.Dataset.range(len(source)).map(bag, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = instances.unbatch().batch(EXTRACT_BATCH).prefetch(2)
    paths = targets if isinstance(targets[0], str) else None
    if paths:
        os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
        temporary = [process_temporary(path) for path in paths]
        arrays = [np.lib.format.open_memmap(t, "w+", np.float16, (total, *s)) for t, s in zip(temporary, shapes)]
    else:
        arrays = targets
    report = Progress(f"backbone features of {what}", -(-total // EXTRACT_BATCH)) if progress else None
    position = 0
    try:
        for batch in batches:
            maps = extractor.predict_on_batch(batch[:, None])
            maps = maps if isinstance(maps, (list, tuple)) else [maps]
            count = int(batch.shape[0])
            for array, values in zip(arrays, maps):
                values = np.asarray(values, dtype=np.float32)[:, 0]
                if not np.all(np.abs(values) <= FLOAT16_MAX):  # NaN, Inf or beyond float16
                    raise ValueError(f"The backbone gave feature values that float16 cannot hold (largest "
                                     f"{np.nanmax(np.abs(values)):.3g}) for {what}: the features cannot be cached. "
                                     f"Received: feature range beyond {FLOAT16_MAX}")
                array[position:position + count] = values
            position += count
            if report:
                report.advance()
        if position != total:
            raise ValueError(f"The bags gave {position} instances for {what}, not the {total} counted when they "
                             f"were read. Received: instances={position}")
        if not paths:
            return arrays
        for array, tmp, path in zip(arrays, temporary, paths):
            array.flush()
            os.replace(tmp, path)
        return [np.load(path, mmap_mode="r") for path in paths]
    finally:
        if paths:
            for tmp in temporary:
                if os.path.exists(tmp):
                    os.remove(tmp)


def feature_dataset(store, training, instances=None, batch_size=1, seed=0, repeat=False, start_step=0,
                    replacement=False):
    """A `tf.data.Dataset` of `(maps, labels)` from a `FeatureStore`, batch for batch the stream `make_dataset`
    gives from the images: the same epoch order and the same instances sampled (seeded alike); what differs is
    the augmentation (each training bag in one of its cached views, drawn for its epoch) and the rounding of
    the features to float16.

    Args:
        store: a `FeatureStore`.
        training, instances, batch_size, seed, repeat, start_step, replacement: as `make_dataset`.

    Returns:
        Batches `(tuple of float32 (B, S, h, w, c) per map, int32 (B,))`.
    """
    import tensorflow as tf

    from mims_tf.data.pipeline import training_stream
    from mims_tf.data.transforms import instance_count, sample_indices

    maps = len(store.arrays[0])
    shapes = store.map_shapes()
    labels = tf.constant(store.labels)
    views = store.views if training else 1

    if store.mode == "memory":  # sliced in the graph: no Python call per bag (an epoch of the head is short)
        offsets = tf.constant(store.offsets)
        tensors = [tf.constant(store.stacked[m][:views]) for m in range(maps)]

        def load(index, view):
            start, stop = offsets[index], offsets[index + 1]
            return [tf.cast(t[view, start:stop], tf.float32) for t in tensors]
    else:
        def load(index, view):
            arrays = tf.numpy_function(lambda i, v: store.load(int(i), int(v)), [index, view],
                                       [tf.float32] * maps, stateful=False)
            return [tf.ensure_shape(a, [None, *shape]) for a, shape in zip(arrays, shapes)]

    def sample(arrays, count, seed_pair):
        if count is None:
            return arrays
        total = tf.shape(arrays[0])[0]
        count = instance_count(count, seed_pair)
        if not replacement:
            count = tf.minimum(count, total)
        index = sample_indices(total, count, seed_pair)
        return [tf.gather(a, index) for a in arrays]

    def eval_map(index):
        arrays = load(index, tf.constant(0, tf.int64))
        if instances is not None:
            arrays = sample(arrays, instances, tf.stack([tf.constant(seed, tf.int64), index]))
        return tuple(arrays), labels[index]

    if not training:
        dataset = tf.data.Dataset.range(len(store)).map(eval_map, num_parallel_calls=tf.data.AUTOTUNE,
                                                         deterministic=True)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def train_map(index, current, count):
        seed_pair = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + current, index])
        # seed + 6: the next offset after `mims_tf.data.transforms`' table of draws (which, as there, shifts both
        # elements of the pair; the tables' runs were made with it, so it stays)
        view = tf.random.stateless_uniform([], seed_pair + 6, 0, views, dtype=tf.int64)
        return tuple(sample(load(index, view), count, seed_pair)), labels[index]

    return training_stream(train_map, len(store), store.instance_counts, instances, batch_size, seed, repeat,
                           start_step, replacement)

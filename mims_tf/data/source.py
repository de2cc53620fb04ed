"""Bags of one split: read and checked once, up front, then kept where a memory budget allows.

`BagSource` reads every bag of a split once (that is where bad files are found:
a clear error, or with `skip_unreadable=True` a report of what was skipped) and
keeps what the model will see, not what the scanner wrote: the central slices,
normalised to [0, 255] and, with `image_size`, resized to the model's input
(bilinear, as `make_dataset` resizes; uint8 sources stay uint8, rounded, others
become float16). A 900 x 600 fundus photograph kept at 224 x 224 is 10x smaller,
a 128-slice OCT volume cropped to its 30 central slices 4x more. Augmentation is
not cached: `make_dataset` applies it per step.

Where the bags are kept (`cache`):

- `"memory"`: in memory;
- `"disk"`: one `.npy` file per bag in `cache_dir`, named by a key made of the
  bag's file contents (a SHA-256 of every byte of each file, remembered in
  `cache_dir/hashes/`, so a second run over unchanged files reads none of them)
  and the preprocessing settings, written once (atomically) and memory-mapped on
  every read. Each cache file is checked when it is loaded; a damaged one is
  removed and the bag read again from its files, with one warning naming it.
  Keys and checks: `mims_tf.data.cache`;
- `"none"`: the files are read again at every step (the up-front pass still
  checks them and counts their instances);
- `"auto"` (the default): memory when the bags fit `memory_budget` (estimated
  from the first bags read: their kept size times the number of bags; default
  half the memory available now), else the disk cache when `cache_dir` is
  given, else `"none"`. `mode` says which was chosen and `reason` why.

Memory then does not grow with the data set, only with what `"memory"` keeps.
"""

import logging
import os

import numpy as np

from mims_tf.data.cache import CacheKeys, load_entry, written
from mims_tf.data.errors import DataError
from mims_tf.data.readers import read_volume
from mims_tf.utils import Progress, remove_orphans

logger = logging.getLogger("mims_tf")

CACHE_MODES = ("auto", "memory", "disk", "none")
SAMPLE_BAGS = 8  # bags read before "auto" estimates the size of the whole split
BUDGET_SHARE = 0.5  # of the memory available, the default budget
_KEY_VERSION = 4  # bump when what a disk cache file holds changes, or how `mims_tf.data.cache` makes its key

NORMALIZE = ("auto", "minmax", "none")


def check_normalize(mode):
    """Raises `ValueError` unless `mode` is one of `NORMALIZE` or a window `(low, high)` with finite low < high."""
    if isinstance(mode, (tuple, list)):
        try:
            low, high = (float(v) for v in mode)
        except (TypeError, ValueError):
            raise ValueError(f"A window is two numbers (low, high). Received: normalize={mode!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f"A window needs finite values with high > low. Received: normalize={mode!r}")
        return mode
    if not isinstance(mode, str) or mode not in NORMALIZE:
        raise ValueError(f"`normalize` must be one of {NORMALIZE} or (low, high). Received: normalize={mode!r}")
    return mode


def normalize_volume(array, mode, path="<volume>"):
    """Maps a volume to [0, 255] (the models' input range).

    Args:
        mode: `"auto"` (8-bit content kept as is: uint8, or floats holding
            whole numbers from 0 to 255 (above 1), so a float copy of 8-bit
            images is read as the images are; anything else per-volume min-max),
            `"minmax"` (per volume), `"none"` (values kept), or a window
            `(low, high)` clipped and scaled (e.g. CT `(-160, 240)`).
    """
    check_normalize(mode)
    if isinstance(mode, (tuple, list)):
        low, high = (float(v) for v in mode)
        return ((np.clip(array.astype(np.float32), low, high) - low) * (255.0 / (high - low))).astype(np.float32)
    if mode == "none" or (mode == "auto" and array.dtype == np.uint8):
        return array
    low, high = float(array.min()), float(array.max())
    if mode == "auto" and array.dtype.kind == "f" and 0 <= low and 1 < high <= 255 and _whole(array):
        return array.astype(np.uint8)  # 8-bit content in another dtype: the same pixels give the same input
    if high == low:
        return np.zeros(array.shape, np.float32)
    # float64 when the range itself would overflow float32 (e.g. -3e38 to 3e38)
    wide = high - low > float(np.finfo(np.float32).max)
    array = array.astype(np.float64 if wide else np.float32)
    return ((array - low) * (255.0 / (high - low))).astype(np.float32)


def _whole(array):
    """True where every value of a float array is a whole number (checked in chunks)."""
    flat = array.reshape(-1)
    step = 1 << 22
    return all(np.array_equal(flat[i:i + step], np.round(flat[i:i + step])) for i in range(0, flat.size, step))


def central_slices(array, central):
    """The `central` middle instances (all if None or fewer)."""
    if central is None or len(array) <= central:
        return array
    start = (len(array) - central) // 2
    return array[start : start + central]


def available_memory():
    """Bytes of memory available to a new allocation now (Linux `MemAvailable`), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def resize_instances(array, image_size):
    """Resizes `(S, H, W, C)` to `image_size` like `make_dataset` (bilinear); uint8 stays uint8 (rounded)."""
    import tensorflow as tf

    resized = tf.image.resize(array.astype(np.float32), tuple(image_size), method="bilinear").numpy()
    if array.dtype == np.uint8:
        return np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return resized.astype(np.float16)


def kept_bag(array, image_size):
    """A bag `(S, H, W, C)` as a `BagSource` keeps it: resized to `image_size` (None: at its size, or already
    that size), as uint8 (8-bit content) or float16."""
    if image_size is not None and array.shape[1:3] != tuple(image_size):
        return resize_instances(array, image_size)
    return array if array.dtype == np.uint8 else array.astype(np.float16)


def size_text(size):
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


class BagSource:
    """Reads the bags of one split: each bag's rows concatenated to `(S, H, W, C)`.

    Args:
        manifest: a `Manifest`.
        split: the split to read (None: all rows).
        central: keep only the central this-many instances of each volume:
            each file of several instances, or a bag whose rows are one image
            each (its rows, in row order, are the slices of one stack).
        normalize: see `normalize_volume`; applied per volume in the same sense
            (a bag of one-image rows is normalised as one stack, not per file).
        cache: where bags are kept: `"auto"`, `"memory"`, `"disk"` or `"none"`
            (module docstring); `True` and `False` mean `"memory"` and `"none"`.
        skip_unreadable: drop bags with unreadable files instead of failing;
            `skipped` lists `(path, reason)` and a summary goes to the `mims_tf` logger.
        progress: report progress while reading (`mims_tf.utils.Progress`, the `mims_tf` logger).
        image_size: `(H, W)`: instances are resized to it before they are kept
            (None: kept at their stored size).
        memory_budget: bytes `"auto"` may keep in memory (None: half the memory
            available when reading starts).
        cache_dir: the folder of the disk cache (needed by `"disk"`).

    Example:

    >>> source = BagSource(manifest, "train", central=30, image_size=(224, 224), cache_dir="~/.cache/mims")
    >>> source.mode, source.reason
    ('memory', '339 bags, about 0.51 GB as kept, within the budget of 11.2 GB (half the memory available)')
    """

    def __init__(self, manifest, split=None, central=None, normalize="auto", cache="auto",
                 skip_unreadable=False, progress=True, image_size=None, memory_budget=None, cache_dir=None):
        if central is not None and (not isinstance(central, int) or central < 1):
            raise ValueError(f"`central` must be a positive integer or None. Received: central={central!r}")
        normalize_volume(np.zeros((1, 1, 1), np.uint8), normalize)  # validates the option
        cache = {True: "memory", False: "none"}.get(cache, cache)
        if cache not in CACHE_MODES:
            raise ValueError(f"`cache` must be one of {CACHE_MODES} (or True / False). Received: cache={cache!r}")
        if cache == "disk" and not cache_dir:
            raise ValueError("cache='disk' needs a `cache_dir`. Received: cache_dir=None")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise ValueError(f"`image_size` must be (height, width) or None. Received: image_size={image_size!r}")
        if memory_budget is not None and memory_budget < 0:
            raise ValueError(f"`memory_budget` must be >= 0 bytes. Received: memory_budget={memory_budget!r}")
        self.manifest = manifest
        self.split = split
        self.central = central
        self.normalize = normalize
        self.image_size = tuple(image_size) if image_size is not None else None
        self.cache_dir = os.path.expanduser(cache_dir) if cache_dir else None
        self._keys = None
        if self.cache_dir:
            remove_orphans(self.cache_dir)  # once, not per bag: the folder may hold a file per bag
            self._keys = CacheKeys(self.cache_dir)
        self.skipped = []
        self.bags = []
        self._arrays = []  # "memory": the arrays; "disk": their cache files
        self._counts = []
        if memory_budget is None:
            available = available_memory()
            memory_budget = None if available is None else int(available * BUDGET_SHARE)
            budget_text = "half the memory available" if available else "memory available unknown"
        else:
            budget_text = "as set"
        self.memory_budget = memory_budget
        self.mode, self.reason = cache, "as asked"
        if cache == "none" and not skip_unreadable:  # read at each step only (no up-front pass)
            self.bags = manifest.bags(split)
            self._counts = None
        else:
            self._read_all(manifest.bags(split), skip_unreadable, progress, budget_text)
        if self.skipped:
            names = "; ".join(f"{p} ({r})" for p, r in self.skipped[:10])
            more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            logger.warning("skipped %d unreadable file(s): %s%s", len(self.skipped), names, more)
        if not self.bags:
            raise DataError(manifest.source, f"no readable bags in split {split!r}")

    @property
    def cache(self):
        """True when bags are kept (in memory or on disk) rather than read at each step."""
        return self.mode in ("memory", "disk")

    def _read_all(self, bags, skip_unreadable, progress, budget_text):
        kept_bytes = 0
        report = Progress(f"reading {self.split or 'all'} bags", len(bags)) if progress and bags else None
        for bag in bags:
            size = self._take(bag, skip_unreadable)
            if report:
                report.advance()
            if size is None:
                continue
            kept_bytes += size
            if self.mode == "auto" and len(self.bags) == SAMPLE_BAGS:
                self._choose(kept_bytes / len(self.bags) * (len(bags) - len(self.skipped)), len(bags), budget_text)
        if self.mode == "auto" and self.bags:  # fewer readable bags than the sample: all of them are read
            self._choose(kept_bytes, len(bags), budget_text)

    def _take(self, bag, skip_unreadable):
        """Reads one bag (or finds it in the disk cache) and keeps it as the mode says; returns the bytes kept,
        or None for a bag skipped as unreadable."""
        try:
            cached = self._cache_file(bag) if self.mode == "disk" else None
        except OSError:  # a file gone or unreadable: the reader says so below
            cached = None
        array = self._cached(cached) if cached else None
        if array is None:
            try:
                array = self._read(bag)
            except DataError as error:
                if not skip_unreadable:
                    raise
                self.skipped.append((error.path, error.reason))
                return None
        self.bags.append(bag)
        self._counts.append(len(array))
        self._keep(bag, array, cached)
        return array.nbytes

    def _choose(self, estimate, count, budget_text):
        """Settles "auto" on a mode from the estimated size of the split as kept; moves what was kept."""
        size = f"{count} bags, about {size_text(estimate)} as kept"
        if self.memory_budget is None or estimate <= self.memory_budget:
            budget = ("no budget known" if self.memory_budget is None
                      else f"the budget of {size_text(self.memory_budget)}")
            self.mode, self.reason = "memory", f"{size}, within {budget} ({budget_text})"
            return
        over = f"{size}, over the budget of {size_text(self.memory_budget)} ({budget_text})"
        arrays, self._arrays = self._arrays, []
        if self.cache_dir:
            self.mode, self.reason = "disk", f"{over}: a disk cache in {self.cache_dir}"
            for bag, array in zip(self.bags, arrays):
                self._keep(bag, array)
        else:
            self.mode, self.reason = "none", f"{over}, and no cache folder: the files are read at every step"

    def _keep(self, bag, array, path=None):
        """Keeps a bag: the array in memory, or (disk) its cache file, written once; `path`: that file's name
        where the caller has it already (naming it reads the bag's files)."""
        if self.mode in ("memory", "auto"):
            self._arrays.append(array)
        elif self.mode == "disk":
            if path is None:
                path = self._cache_file(bag)
                self._cached(path)  # a damaged file there is removed (and named), so it is written again
            if not os.path.isfile(path):
                self._write(path, array)
            self._arrays.append(path)

    def _write(self, path, array):
        os.makedirs(self.cache_dir, exist_ok=True)
        with written(path) as tmp:  # per process: workers may fill one cache folder at once
            np.save(tmp, np.asarray(array))

    def _cached(self, path, count=None):
        """The bag in disk cache file `path` (memory-mapped) where the file holds a bag as this source keeps
        it (`count` instances where given), else None: no file, or a damaged one, which is removed, with one
        warning naming it, so the bag is read again from its files (`mims_tf.data.cache.load_entry`)."""
        return load_entry(path, lambda array: self._problem(array, count), "disk cache file",
                          "the bag is read again from its files")

    def _problem(self, array, count=None):
        """What is wrong with the dtype or shape of `array` as a kept bag of this source; None: nothing."""
        if array.dtype not in (np.uint8, np.float16):
            return f"dtype {array.dtype}, not uint8 or float16"
        if (array.ndim != 4 or array.size == 0 or array.shape[-1] not in (1, 3, 4)
                or (self.image_size is not None and array.shape[1:3] != self.image_size)
                or (self.central is not None and len(array) > self.central)
                or (count is not None and len(array) != count)):
            return f"shape {array.shape}, not a bag as kept here"
        return None

    def _cache_file(self, bag):
        """The disk cache file of `bag` (`mims_tf.data.cache.CacheKeys.bag_file`); `OSError` where a file
        cannot be read."""
        return self._keys.bag_file(bag.paths, (_KEY_VERSION, self.central, self.normalize, self.image_size))

    def _read(self, bag):
        parts = []
        for path in bag.paths:
            array = read_volume(path).array
            parts.append((path, array[..., None] if array.ndim == 3 else array))
        shapes = {array.shape[1:] for _, array in parts}
        if len(shapes) > 1:
            raise DataError(bag.paths[0], f"bag {bag.bag!r} mixes instance shapes {sorted(shapes)}")
        if len(parts) > 1 and all(len(array) == 1 for _, array in parts):
            # one image per row: the rows are the slices of one stack, in row order (normalised and cropped as one)
            parts = [(bag.paths[0], np.concatenate([array for _, array in parts]))]
        parts = [central_slices(normalize_volume(array, self.normalize, path), self.central) for path, array in parts]
        return kept_bag(parts[0] if len(parts) == 1 else np.concatenate(parts), self.image_size)

    def __len__(self):
        return len(self.bags)

    @property
    def labels(self):
        return np.array([bag.label for bag in self.bags], dtype=np.int32)

    def load(self, index):
        """Returns bag `index` as float32 `(S, H, W, C)` in [0, 255]."""
        if self.mode == "memory":
            array = self._arrays[index]
        elif self.mode == "disk":
            array = self._cached(self._arrays[index], self._counts[index])
            if array is None:  # damaged since the bags were read: read again (and written again)
                array = self._read(self.bags[index])
                self._write(self._arrays[index], array)
        else:
            array = self._read(self.bags[index])
        return np.asarray(array, dtype=np.float32)

    def known_instance_counts(self):
        """Instances per bag where the bags were read up front, else None (nothing is read to count them)."""
        return None if self._counts is None else list(self._counts)

    def instance_counts(self):
        """Instances per bag (counted while reading; without an up-front pass, by reading the files)."""
        if self._counts is None:
            self._counts = [len(self._read(bag)) for bag in self.bags]
        return list(self._counts)

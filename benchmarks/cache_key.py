"""What the disk cache's key costs, beside reading the same data with the package's reader.

The disk cache of `BagSource` names each bag's file by a SHA-256 of every byte of the bag's source files
(`mims_tf.data.cache.file_digest`, 1 MiB at a time). A file's hash is remembered in the cache folder under
its `file_stamp` (device, inode, size, modification and status-change times), so a later run over unchanged
files only stats them. This writes `--megabytes` of `.npy` volumes (`--dtype`, `--files` of them) to a
temporary folder and times, interleaved round by round (`benchmarks/_timing.py`, median of `--rounds`):

- `cache_key`: the first run's key, every file hashed (`CacheKeys.file_key`, nothing remembered);
- `remembered_key`: a later run's key, every hash remembered (one `os.stat` and one small read per file);
- `read`: reading the files with the package's reader (`mims_tf.data.readers.read_volume`: `np.load` and the
  checks every file gets);
- `np_load`: `np.load` alone.

The files are in the page cache (just written, and read every round), for the hash as for the readers: the
best case for reading, so `cache_key_over_read` is the key's worst case. From a cold disk both wait for the
same bytes to come from it.

    python benchmarks/cache_key.py
    python benchmarks/cache_key.py --megabytes 256 --rounds 3

Ends with `name: value` lines (seconds per GB of source data, 1 GB = 1e9 bytes, and their ratios).
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import mims_tf.data.cache as cache_module  # noqa: E402
from mims_tf.data.cache import CacheKeys  # noqa: E402
from mims_tf.data.readers import read_volume  # noqa: E402

from _timing import interleaved_medians  # noqa: E402  (benchmarks/_timing.py)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=1024, help="source data written and keyed (1e6 bytes)")
    parser.add_argument("--files", type=int, default=32, help="volumes it is split into")
    parser.add_argument("--dtype", default="int16", help="their pixel type (int16: CT; float32 adds a check)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where to write them (default: a temporary folder)")
    args = parser.parse_args(argv)

    dtype = np.dtype(args.dtype)
    per_file = args.megabytes * 10**6 // args.files
    side = 256
    slices = max(1, per_file // (side * side * dtype.itemsize))
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        data = os.path.join(folder, "data")
        os.makedirs(data)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.files):
            path = os.path.join(data, f"v{i:03d}.npy")
            np.save(path, rng.integers(0, 2000, (slices, side, side)).astype(dtype))
            paths.append(path)
        total = sum(os.path.getsize(p) for p in paths)
        print(f"{args.files} files of {slices} x {side} x {side} {dtype}, {total / 1e9:.3f} GB in all, "
              f"in {data}", flush=True)

        # the files were written just now: remember their hashes anyway (the guard against a coarse clock waits
        # RACY_SECONDS after a file's last change; a real data set changed long before)
        cache_module.RACY_SECONDS = -3600
        remembered = CacheKeys(os.path.join(folder, "cache"))
        for path in paths:
            remembered.file_key(path)

        def cache_key():
            keyer = CacheKeys(os.path.join(folder, "empty"))  # nothing remembered: every file hashed
            keyer._remember = lambda stamp, digest: None
            for path in paths:
                keyer.file_key(path)

        def remembered_key():
            remembered._known = {}  # a new run: only the cache folder remembers
            for path in paths:
                remembered.file_key(path)

        def read():
            for path in paths:
                read_volume(path)

        def np_load():
            for path in paths:
                np.load(path)

        steps = {"cache_key": cache_key, "remembered_key": remembered_key, "read": read, "np_load": np_load}
        medians = interleaved_medians(steps, args.rounds, warmup=1)

    per_gb = {name: seconds * 1e9 / total for name, seconds in medians.items()}
    print(f"cache_key_seconds_per_gb: {per_gb['cache_key']:.3f}")
    print(f"remembered_key_seconds_per_gb: {per_gb['remembered_key']:.5f}")
    print(f"read_seconds_per_gb: {per_gb['read']:.3f}")
    print(f"np_load_seconds_per_gb: {per_gb['np_load']:.3f}")
    print(f"cache_key_over_read: {per_gb['cache_key'] / per_gb['read']:.3f}")
    print(f"remembered_key_over_read: {per_gb['remembered_key'] / per_gb['read']:.5f}")


if __name__ == "__main__":
    main()

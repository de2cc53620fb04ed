"""Disk cache entries: their keys (of file contents) and their checks when loaded.

The key of a bag's cache file (`CacheKeys.bag_file`) is made of the preprocessing settings and a SHA-256 of
every byte of each source file (`file_digest`). A file's hash is remembered in `<cache folder>/hashes/` under
its `file_stamp`: device, inode, size, modification and status-change times (`st_ctime`, which no copy or
`touch` can set back). So a second run over the same files stats them and reads none of them, while a file
rewritten in place, even with its size and modification time kept (`cp -p`, `rsync -a`, `tar x`), is hashed
again.

Every cache file (the bags of `mims_tf.data.source`, the feature maps of `mims_tf.data.features`) is checked
when it is loaded (`load_entry`: readable, size, the caller's shape and dtype, finite values); a damaged one is
removed, with one warning naming it, so its caller makes it again. Files are written atomically (`written`).
"""

import contextlib
import hashlib
import logging
import os
import stat
import threading
import time

import numpy as np

from mims_tf.data.errors import describe
from mims_tf.data.readers import split_item
from mims_tf.utils import process_temporary, remove_orphans

logger = logging.getLogger("mims_tf")

HASH_CHUNK = 1 << 20  # bytes hashed per read
RACY_SECONDS = 2  # a file changed this recently is hashed again at every run (its times may not yet tell)


def file_digest(path, chunk=HASH_CHUNK):
    """The SHA-256 (hex) of every byte of file `path`, read `chunk` bytes at a time into one buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while count := f.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


def file_stamp(status):
    """What of a file's `os.stat` any write to it changes: device, inode, size, modification and status-change
    times. No copy restores `st_ctime` (`utime` itself sets it to now): `cp -p`, `rsync -a` and `tar x` keep the
    size and modification time of a file rewritten in place, not its status-change time."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def nonfinite_count(array, chunk=1 << 24):
    """NaN and Inf values of `array` (a memory map too), counted `chunk` values at a time."""
    if array.dtype.kind not in "fc":
        return 0
    flat = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
    step = max(1, chunk // max(1, flat.shape[1]))
    return sum(int(flat[i:i + step].size - np.count_nonzero(np.isfinite(flat[i:i + step])))
               for i in range(0, len(flat), step))


@contextlib.contextmanager
def written(path):
    """A temporary path of this process's beside `path`, renamed onto `path` when the block succeeds (so a
    reader never sees a half-written cache file) and removed on an error; one a killed process left is removed
    by `remove_orphans`. Threads of one process take turns (they would share the temporary)."""
    with _WRITE_LOCK:
        tmp = process_temporary(path)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


_WRITE_LOCK = threading.RLock()


def load_entry(path, problem, what, then):
    """The array in cache file `path` (memory-mapped) where it passes the checks, else None: no file, or a
    damaged one, which is removed, with one warning (`what` is damaged ...: removed; `then`).

    Checked: a readable `.npy` (not an `.npz`), `problem(array)` (the caller's dtype and shape: a text, or None
    where they are right), the file's size against its header, and finite values.
    """
    if not os.path.isfile(path):
        return None
    try:
        array = np.load(path, mmap_mode="r")
        reason = _problem(array, path, problem)
    except (EOFError, ValueError, OSError) as error:
        reason = f"unreadable: {describe(error)}"
    if reason is None:
        return array
    logger.warning("%s %s is damaged (%s): removed; %s", what, path, reason, then)
    with contextlib.suppress(OSError):
        os.remove(path)
    return None


def _problem(array, path, problem):
    if not isinstance(array, np.ndarray):
        with contextlib.suppress(AttributeError):
            array.close()  # an .npz
        return "not a .npy array"
    reason = problem(array)
    if reason:
        return reason
    size, expected = os.path.getsize(path), getattr(array, "offset", 0) + array.nbytes
    if size != expected:
        return f"{size} bytes where its header gives {expected}"
    bad = nonfinite_count(array)
    return f"{bad} NaN or Inf values" if bad else None


class CacheKeys:
    """The keys of the disk cache in `folder`: a bag's cache file by its files' contents (`bag_file`), with
    the files' hashes remembered in `folder/hashes/` (its orphaned temporaries are removed here, once)."""

    def __init__(self, folder):
        self.folder = folder
        self._known = {}  # `file_stamp` -> the file's SHA-256, for this run
        remove_orphans(os.path.join(folder, "hashes"))

    def bag_file(self, paths, settings):
        """The cache file of a bag of `paths` kept with `settings` (a tuple, its `repr` hashed, a key version
        first): a key of the files' contents (`file_key`), the `.npz` items read and the settings. `OSError`
        where a file cannot be read."""
        digest = hashlib.sha256(repr(tuple(settings)).encode())
        for path in paths:
            file_path, item = split_item(path)
            digest.update(self.file_key(file_path).encode() + repr(item).encode())
        return os.path.join(self.folder, digest.hexdigest()[:32] + ".npy")

    def file_key(self, path):
        """A key of one file's content, its SHA-256 (every byte), or of a folder's (the names and keys of the
        files the reader takes); `OSError` where it cannot be read.

        A file is hashed once per run (the items of one `.npz` share it) and, where the cache folder
        remembers its hash under the same `file_stamp` (a later run over unchanged files), not at all. A file
        whose status changed less than `RACY_SECONDS` before it was hashed is not remembered: a coarse clock
        could give a second write within that time the same stamp. Not on Windows, whose `st_ctime` is the
        creation time (kept by a write): there every run hashes every file.
        """
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            digest = hashlib.sha256(b"folder")
            for name in sorted(os.listdir(path)):
                file = os.path.join(path, name)
                if not (name.startswith(".") or os.path.isdir(file) or not os.path.exists(file)):
                    digest.update(repr((name, self.file_key(file))).encode())
            return digest.hexdigest()
        stamp = file_stamp(status)
        if not stat.S_ISREG(status.st_mode):  # a pipe or device: never opened here, the reader refuses it
            return repr(stamp)
        if stamp not in self._known:
            digest = self._remembered(stamp)
            if digest is None:
                started = time.time_ns()
                digest = file_digest(path)
                settled = status.st_ctime_ns <= started - RACY_SECONDS * 10**9
                if settled and file_stamp(os.stat(path)) == stamp:  # and unchanged while it was read
                    self._remember(stamp, digest)
            self._known[stamp] = digest
        return self._known[stamp]

    def _hash_file(self, stamp):
        return os.path.join(self.folder, "hashes", hashlib.sha256(repr(("sha256", *stamp)).encode()).hexdigest()[:32])

    def _remembered(self, stamp):
        """The SHA-256 the cache folder remembers for a file of this `file_stamp`, or None."""
        if os.name == "nt":
            return None
        try:
            with open(self._hash_file(stamp), encoding="ascii") as f:
                text = f.read(100).strip()
        except (OSError, ValueError):
            return None
        return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None

    def _remember(self, stamp, digest):
        if os.name == "nt":
            return
        path = self._hash_file(stamp)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with written(path) as tmp, open(tmp, "w", encoding="ascii") as f:
            f.write(digest + "\n")

"""NumPy readers: `.npy` files and the arrays and items of `.npz` archives (MedMNIST-style `key/index` items).

Headers are checked before anything is allocated: pickled (object) arrays are refused, and so are shapes
that need more bytes than the file or zip member holds, and zip members that declare more bytes than
deflate can produce from their compressed size (`MAX_DEFLATE_RATIO`). `read_volume` in
`mims_tf.data.readers` dispatches `.npy` and `file.npz#key/index` paths here.
"""

import functools
import math
import os
import re
import zipfile

import numpy as np

from mims_tf.data.errors import DataError, describe
from mims_tf.data.volume import Volume, as_instances

# deflate cannot compress by more than about 1032:1, so a .gz or zip member never holds more.
MAX_DEFLATE_RATIO = 1032


def _npy_header(stream, available, path, what):
    """Reads a .npy header from `stream`; returns `(shape, dtype)`.

    Refuses object (pickled) arrays and shapes that need more bytes than `available` (the bytes
    of the file or zip member), before anything is allocated.
    """
    try:
        version = np.lib.format.read_magic(stream)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(stream)
    except Exception as error:  # noqa: BLE001
        raise DataError(path, f"unreadable or corrupt {what}: not a NumPy array, "
                              f"or truncated ({describe(error)})") from None
    if dtype.hasobject:
        raise DataError(path, f"{what} holds pickled Python objects (dtype {dtype}); "
                              "refused: loading them can run code")
    needed = math.prod(shape) * dtype.itemsize
    left = available - stream.tell()
    if needed > left:
        raise DataError(path, f"{what} declares shape {shape} of {dtype} ({needed} bytes) "
                              f"but holds {max(left, 0)} bytes: "
                              "truncated or corrupt header")
    return shape, dtype


def read_npy(path):
    """A `.npy` file, its header checked first (see `_npy_header`)."""
    with open(path, "rb") as stream:
        _npy_header(stream, os.fstat(stream.fileno()).st_size, path, ".npy file")
        stream.seek(0)
        return np.load(stream, allow_pickle=False)


def _open_npz(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(path, "unreadable or corrupt .npz file: not a zip archive, "
                              f"or truncated ({describe(error)})") from None


def _npz_member(archive, key, path):
    names = {name[:-4] if name.endswith(".npy") else name: name for name in archive.namelist()}
    if key not in names:
        raise DataError(path, f"no array {key!r} (has {', '.join(sorted(names))})")
    return archive.getinfo(names[key])


def _check_member_size(info, path, what):
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024:
        raise DataError(path, f"{what} declares {info.file_size} bytes from {info.compress_size} compressed: corrupt")


def _read_npz_member(path, key, read):
    """Opens array `key` of an `.npz`, checks its size and `.npy` header, and returns `read(header, open_member)`.

    Whatever fails inside is one `DataError` naming the file and the array.
    """
    with _open_npz(path) as archive:
        info = _npz_member(archive, key, path)
        what = f"array {key!r}"
        _check_member_size(info, path, what)
        try:
            with archive.open(info) as member:
                header = _npy_header(member, info.file_size, path, what)
            return read(header, lambda: archive.open(info))
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001
            raise DataError(path, f"unreadable or corrupt {what}: truncated or damaged ({describe(error)})") from None


def npz_shape(path, key):
    """The shape of array `key` of an `.npz`, from its header only (nothing else is read)."""
    return _read_npz_member(path, key, lambda header, open_member: header[0])


def read_npz_array(path, key):
    """Array `key` of an `.npz` (checked like a `.npy`; cached while the file is unchanged)."""
    status = os.stat(path)
    return _npz_array(os.fspath(path), key, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=8)
def _npz_array(path, key, mtime_ns, size):
    def read(header, open_member):
        with open_member() as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    return _read_npz_member(path, key, read)


def read_npz_item(path, item):
    """Reads `path#key/index`, e.g. `adrenalmnist3d.npz#train_images/12`.

    A 3D item `(D, H, W)` gives its D slices; a 2D item `(H, W)` or `(H, W, 3)` one image.
    """
    match = re.fullmatch(r"([^/]+)/(\d+)", item or "")
    if not match:
        raise DataError(path, f"name an array item as {path}#<key>/<index>, e.g. #train_images/0; got {item!r}")
    key, index = match.group(1), int(match.group(2))
    array = read_npz_array(path, key)
    if array.ndim == 0:
        raise DataError(path, f"array {key!r} is a scalar, not a set of items")
    if index >= len(array):
        raise DataError(path, f"index {index} out of range for {key!r} of length {len(array)}")
    image = array[index]
    if image.ndim == 3 and image.shape[-1] in (3, 4):  # a 2D RGB(A) item
        image = image[None]
    return Volume(as_instances(image, path))

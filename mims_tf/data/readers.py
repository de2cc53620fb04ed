"""Readers: every supported file becomes a `Volume` of instances `(S, H, W)` or `(S, H, W, C)`.

`read_volume(path)` picks the reader from the path (this module holds the readers of medical and image
formats; `.npy` and `.npz` are read in `mims_tf.data.arrays`, vendor OCT files in `mims_tf.data.oct`):

| path | reader | instances |
|---|---|---|
| `file.npz#key/index` | MedMNIST-style `.npz` item (`mims_tf.data.arrays`) | the slices of a 3D item, or one 2D image |
| `.npy` | NumPy (`mims_tf.data.arrays`) | 2D: one image; 3D: `(S, H, W)`; 4D: `(S, H, W, C)` |
| `.nii`, `.nii.gz` | nibabel | axial slices of the closest canonical (RAS+) orientation, anterior up |
| folder of DICOM files, `.dcm` | pydicom | slices sorted by position along the slice normal (not by name) |
| `.tif`, `.tiff` | tifffile | every page (pages of different sizes are an error) |
| `.png`, `.jpg`, `.jpeg`, `.bmp` | Pillow | one image |
| folder of images | Pillow | one slice per file, natural name order |
| `.vol`, `.e2e`, `.fda`, `.fds`, `.img` | `mims_tf.data.oct` | B-scans (needs `pip install mims-tf[oct]`) |

`READERS` is this table as data, the one list of readable suffixes (`SUPPORTED_SUFFIXES`,
`readable_suffix`). `#` separates an item only in `.npz` paths (the last `#`); any other name, `#` included,
is the file's path (`scan#1.npy` is one file).

Every reader rejects bad input with a `DataError` naming the file and the cause:
missing, empty, unreadable or truncated files, anything that is not a regular file or
a folder (named pipes, sockets, devices: never opened), wrong dimensions, empty volumes,
NaN/Inf or values beyond float32, pickled (object) arrays, and headers that declare
more data than the file can hold or images larger than `PIL.Image.MAX_IMAGE_PIXELS`
(refused before anything is allocated).
"""

import math
import os
import re
import stat

import numpy as np

from mims_tf.data.arrays import MAX_DEFLATE_RATIO, read_npy, read_npz_item
from mims_tf.data.errors import DataError, describe
from mims_tf.data.oct import read_cirrus_img, read_heidelberg_e2e, read_heidelberg_vol, read_topcon
from mims_tf.data.volume import Volume, as_instances

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
# The readable files: `(suffixes, reader(path, item))`; `item` is what follows `#` in a `.npz` path, else "".
READERS = (
    ((".npz",), read_npz_item),
    ((".npy",), lambda path, item: Volume(as_instances(read_npy(path), path))),
    ((".nii", ".nii.gz"), lambda path, item: read_nifti(path)),
    ((".dcm",), lambda path, item: read_dicom_series([path], path)),
    (TIFF_SUFFIXES, lambda path, item: read_tiff(path)),
    (IMAGE_SUFFIXES, lambda path, item: Volume(_read_image(path)[None])),
    ((".vol",), lambda path, item: read_heidelberg_vol(path)),
    ((".e2e",), lambda path, item: read_heidelberg_e2e(path)),
    ((".fda", ".fds"), lambda path, item: read_topcon(path)),
    ((".img",), lambda path, item: read_cirrus_img(path)),
)
_BY_SUFFIX = {suffix: reader for suffixes, reader in READERS for suffix in suffixes}
SUPPORTED_SUFFIXES = tuple(_BY_SUFFIX)


def readable_suffix(path):
    """The suffix of `SUPPORTED_SUFFIXES` that `path` ends with (any case, the longest: `.nii.gz`), or ""."""
    lower = os.fspath(path).lower()
    return max((suffix for suffix in SUPPORTED_SUFFIXES if lower.endswith(suffix)), key=len, default="")


def split_item(path):
    """`(file, item)`: a `.npz` path's item after its last `#`; any other path is a file, `#` included."""
    path = os.fspath(path)
    file_path, mark, item = path.rpartition("#")
    if mark and file_path.lower().endswith(".npz"):
        return file_path, item
    return path, ""


def normalize_item(item):
    """`"train_images/01"` -> `"train_images/1"`: one spelling per item, so duplicates compare equal."""
    match = re.fullmatch(r"([^/]+)/(\d+)", item or "")
    return f"{match.group(1)}/{int(match.group(2))}" if match else item


def check_regular(path, folders=True):
    """Raises DataError unless `path` is a regular file (or a folder): pipes, sockets and devices are never opened."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        return
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")]
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    raise DataError(path, f"not a regular file ({kind}); only files and folders are read")


def read_volume(path):
    """Reads any supported file (see the module docstring) into a checked `Volume`."""
    path = os.fspath(path)
    file_path, item = split_item(path)
    if not os.path.exists(file_path):
        raise DataError(file_path, "file not found")
    check_regular(file_path)
    if not os.path.isdir(file_path) and os.path.getsize(file_path) == 0:
        raise DataError(file_path, "empty file (0 bytes)")
    suffix = readable_suffix(file_path)
    try:
        if os.path.isdir(file_path):
            volume = _read_folder(file_path)
        elif suffix:
            volume = _BY_SUFFIX[suffix](file_path, item)
        else:
            raise DataError(file_path, f"unknown file type (supported: {supported_suffixes()})")
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - library errors become one clear line
        raise DataError(file_path, f"unreadable or corrupt file ({describe(error)})") from None
    return check_volume(volume, path)


def supported_suffixes():
    """`SUPPORTED_SUFFIXES` as a line for messages (`.npz` with its item: `.npz#key/index`)."""
    return ", ".join(".npz#key/index" if suffix == ".npz" else suffix for suffix in SUPPORTED_SUFFIXES)


def check_volume(volume, path):
    """Checks rank, emptiness and finiteness; returns the volume."""
    array = volume.array
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)):
        raise DataError(path, f"wrong dimensions {array.shape}: expected (S, H, W) or (S, H, W, C) with C in 1, 3, 4")
    if array.size == 0:
        raise DataError(path, f"empty volume, shape {array.shape}")
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.shape[1] >= 4 * array.shape[2]:
        raise DataError(path, f"shape {array.shape} reads as {array.shape[0]} slices of {array.shape[1]} x "
                              f"{array.shape[2]} px: an RGB image saved as (H, W, {array.shape[2]})? Save it as "
                              f"(1, H, W, {array.shape[2]}), or as a PNG")
    if array.dtype.kind not in "uif" and array.dtype != bool:
        raise DataError(path, f"unsupported pixel type {array.dtype}")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise DataError(path, f"contains NaN or Inf values ({int((~finite).sum())} of {array.size})")
        largest = float(np.abs(array).max())
        if largest > float(np.finfo(np.float32).max):
            raise DataError(path, f"values beyond float32's range (largest magnitude {largest:.3g}; "
                                  "float32 holds up to 3.4e+38)")
    return volume


def read_nifti(path):
    """Axial slices `(Z, Y, X)` of the closest canonical (RAS+) orientation, anterior up."""
    import nibabel

    image = nibabel.load(path)
    shape = tuple(image.shape)
    if not (len(shape) in (2, 3) or (len(shape) == 4 and shape[-1] == 1)):
        raise DataError(path, f"wrong dimensions {shape}: expected a 3D NIfTI volume")
    needed = math.prod(shape) * image.get_data_dtype().itemsize
    size = os.path.getsize(path)
    room = size * MAX_DEFLATE_RATIO + 1024 if path.lower().endswith(".gz") else size
    if needed > room:
        raise DataError(path, f"header declares {shape} of {image.get_data_dtype()} ({needed} bytes), more than "
                              f"the file of {size} bytes can hold: truncated or corrupt")
    image = nibabel.as_closest_canonical(image)
    data = np.asarray(image.dataobj)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    zooms = image.header.get_zooms()[:3]
    array = np.flip(np.transpose(data, (2, 1, 0)), axis=1)
    return Volume(np.ascontiguousarray(array), spacing=tuple(float(z) for z in zooms[::-1]))


def read_dicom_series(files, path):
    """Stacks DICOM slices sorted by their position along the slice normal."""
    import pydicom

    slices = []
    for file in files:
        try:
            slices.append((file, pydicom.dcmread(file)))
        except Exception as error:  # noqa: BLE001
            raise DataError(file, f"unreadable DICOM file ({describe(error)})") from None
    for file, ds in slices:
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise DataError(file, "unreadable DICOM file: no pixel data (not an image, or damaged)")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise DataError(path, f"holds {len(series)} DICOM series; put one series per folder")

    def position(item):
        file, ds = item
        if hasattr(ds, "ImagePositionPatient") and hasattr(ds, "ImageOrientationPatient"):
            orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
            normal = np.cross(orientation[:3], orientation[3:])
            return float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float)))
        return float(getattr(ds, "InstanceNumber", 0) or 0)

    slices.sort(key=position)
    arrays = []
    for file, ds in slices:
        try:
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as error:  # noqa: BLE001
            raise DataError(file, f"unreadable DICOM pixel data ({describe(error)})") from None
        pixels = pixels * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
        arrays.append(pixels[None] if pixels.ndim == 2 else pixels)  # multi-frame files stay 3D
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(path, f"DICOM slices of different sizes {sorted(shapes)}")
    array = np.concatenate(arrays, axis=0)
    spacing = None
    first = slices[0][1]
    if hasattr(first, "PixelSpacing"):
        gap = (abs(position(slices[1]) - position(slices[0])) if len(slices) > 1
               else float(getattr(first, "SliceThickness", 0) or 0))
        spacing = (gap, float(first.PixelSpacing[0]), float(first.PixelSpacing[1]))
    return Volume(array, spacing=spacing, meta={"series": series.pop()})


def _pixel_limit():
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def read_tiff(path):
    """Every page of a (multi-page) TIFF, one instance each: `(S, H, W)` or `(S, H, W, C)`.

    Pages written one at a time (separate series) are all read; pages of different sizes are an error.
    """
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        pages = list(tiff.pages)
        if not pages:
            raise DataError(path, "TIFF file without pages")
        limit = _pixel_limit()
        shapes = []
        for number, page in enumerate(pages, start=1):
            axes = page.axes
            shape = tuple(int(n) for n in page.shape)
            pixels = math.prod(n for n, axis in zip(shape, axes) if axis not in "S")
            if limit and pixels > limit:
                raise DataError(path, f"page {number} of {shape} holds {pixels} pixels, over the limit of {limit} "
                                      "(PIL.Image.MAX_IMAGE_PIXELS): refused before decoding")
            shapes.append(shape)
        if len(set(shapes)) > 1:
            sizes = ", ".join(f"page {i}: {shape}" for i, shape in enumerate(shapes, start=1) if shape != shapes[0])
            raise DataError(path, f"TIFF pages of different sizes (page 1: {shapes[0]}; {sizes})")
        arrays = []
        for page in pages:
            array = page.asarray()
            if page.axes.startswith("S") and array.ndim == 3:  # planar (separate) samples: to channels last
                array = np.moveaxis(array, 0, -1)
            arrays.append(array)
    array = np.stack(arrays)
    if array.ndim == 4 and array.shape[-1] not in (1, 3, 4):
        raise DataError(path, f"wrong dimensions {array.shape}: TIFF pages must be 2D or have 1, 3 or 4 samples")
    return Volume(as_instances(array, path))


def _read_image(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                raise DataError(path, f"image of {width}x{height} pixels is over the limit of {limit} pixels "
                                      "(PIL.Image.MAX_IMAGE_PIXELS): refused before decoding")
            image.load()  # decode now: truncated files fail here
            if image.mode in ("RGBA", "P", "LA", "CMYK", "YCbCr"):
                image = image.convert("RGB")
            return np.asarray(image)
    except Image.DecompressionBombError as error:
        raise DataError(path, f"image too large, refused before decoding ({describe(error)})") from None


def natural_key(name):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_folder(path):
    names = sorted((f for f in os.listdir(path) if not f.startswith(".")), key=natural_key)
    files = []
    for name in names:
        file = os.path.join(path, name)
        if os.path.isdir(file) or not os.path.exists(file):
            continue
        check_regular(file, folders=False)
        files.append(file)
    if not files:
        raise DataError(path, "empty folder: expected DICOM slices or image files")
    if any(f.lower().endswith(".dcm") for f in files) or _looks_like_dicom(files[0]):
        return read_dicom_series([f for f in files if not f.lower().endswith((".txt", ".json", ".md"))], path)
    images = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES + TIFF_SUFFIXES)]
    if not images:
        raise DataError(path, "no DICOM or image files in folder")
    slices = []
    for file in images:
        if os.path.getsize(file) == 0:
            raise DataError(file, "empty file (0 bytes)")
        try:
            if file.lower().endswith(TIFF_SUFFIXES):
                pages = read_tiff(file).array
                if len(pages) != 1:
                    raise DataError(file, f"TIFF of {len(pages)} pages in a folder stack, "
                                          "which takes one image per file")
                slices.append(pages[0])
            else:
                slices.append(_read_image(file))
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001
            raise DataError(file, f"unreadable image ({describe(error)})") from None
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        sizes = {shape[:2] for shape in shapes}
        what = "sizes" if len(sizes) > 1 else "channels (grey and colour; convert them to one)"
        raise DataError(path, f"images of different {what} in one stack: {sorted(shapes)}")
    return Volume(np.stack(slices))


def _looks_like_dicom(file):
    with open(file, "rb") as f:
        header = f.read(132)
    return header[128:132] == b"DICM"

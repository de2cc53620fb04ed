"""Readers: every supported file becomes a `Volume` of instances `(S, H, W)` or `(S, H, W, C)`.

`read_volume(path)` picks the reader from the path:

| path | reader | instances |
|---|---|---|
| `file.npz#key/index` | MedMNIST-style `.npz` item | the slices of a 3D item, or one 2D image |
| `.npy` | NumPy | 2D: one image; 3D: `(S, H, W)`; 4D: `(S, H, W, C)` |
| `.nii`, `.nii.gz` | nibabel | axial slices of the closest canonical (RAS+) orientation, anterior up |
| folder of DICOM files, `.dcm` | pydicom | slices sorted by position along the slice normal (not by name) |
| `.tif`, `.tiff` | tifffile | pages |
| `.png`, `.jpg`, `.jpeg`, `.bmp` | Pillow | one image |
| folder of images | Pillow | one slice per file, natural name order |
| `.vol`, `.e2e`, `.fda`, `.fds`, `.img` | `mims_tf.data.oct` | B-scans (needs `pip install mims-tf[oct]`) |

Every reader rejects bad input with a `DataError` naming the file and the cause:
missing, unreadable or truncated files, wrong dimensions, empty volumes, NaN/Inf.
"""

import functools
import os
import re

import numpy as np

from mims_tf.data.errors import DataError
from mims_tf.data.oct import read_oct
from mims_tf.data.volume import Volume

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
OCT_SUFFIXES = (".vol", ".e2e", ".fda", ".fds", ".img")


def read_volume(path):
    """Reads any supported file (see the module docstring) into a checked `Volume`."""
    path = os.fspath(path)
    file_path, _, item = path.partition("#")
    if not os.path.exists(file_path):
        raise DataError(file_path, "file not found")
    lower = file_path.lower()
    try:
        if os.path.isdir(file_path):
            volume = _read_folder(file_path)
        elif lower.endswith(".npz"):
            volume = read_npz_item(file_path, item)
        elif lower.endswith(".npy"):
            volume = Volume(_as_instances(np.load(file_path, allow_pickle=False), file_path))
        elif lower.endswith((".nii", ".nii.gz")):
            volume = read_nifti(file_path)
        elif lower.endswith(".dcm"):
            volume = read_dicom_series([file_path], file_path)
        elif lower.endswith(TIFF_SUFFIXES):
            volume = read_tiff(file_path)
        elif lower.endswith(IMAGE_SUFFIXES):
            volume = Volume(_read_image(file_path)[None])
        elif lower.endswith(OCT_SUFFIXES):
            volume = read_oct(file_path)
        else:
            raise DataError(file_path, f"unknown file type (supported: {supported_suffixes()})")
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - library errors become one clear line
        raise DataError(file_path, f"unreadable or corrupt file ({_describe(error)})") from None
    return check_volume(volume, path)


def supported_suffixes():
    return ", ".join((".npz#key/index", ".npy", ".nii", ".nii.gz", ".dcm", *TIFF_SUFFIXES, *IMAGE_SUFFIXES, *OCT_SUFFIXES))


def check_volume(volume, path):
    """Checks rank, emptiness and finiteness; returns the volume."""
    array = volume.array
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)):
        raise DataError(path, f"wrong dimensions {array.shape}: expected (S, H, W) or (S, H, W, C) with C in 1, 3, 4")
    if array.size == 0:
        raise DataError(path, f"empty volume, shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(path, f"contains NaN or Inf values ({int((~np.isfinite(array)).sum())} of {array.size})")
    if array.dtype.kind not in "uif" and array.dtype != bool:
        raise DataError(path, f"unsupported pixel type {array.dtype}")
    return volume


def _describe(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _as_instances(array, path):
    """2D -> (1, H, W); 3D and 4D as they are."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim in (3, 4):
        return array
    raise DataError(path, f"wrong dimensions {array.shape}: expected 2 to 4 axes")


@functools.lru_cache(maxsize=8)
def _npz_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_npz_item(path, item):
    """Reads `path#key/index`, e.g. `adrenalmnist3d.npz#train_images/12`.

    A 3D item `(D, H, W)` gives its D slices; a 2D item `(H, W)` or `(H, W, 3)` one image.
    """
    match = re.fullmatch(r"([^/]+)/(\d+)", item or "")
    if not match:
        raise DataError(path, f"name an array item as {path}#<key>/<index>, e.g. #train_images/0; got {item!r}")
    key, index = match.group(1), int(match.group(2))
    arrays = _npz_arrays(path)
    if key not in arrays:
        raise DataError(path, f"no array {key!r} (has {', '.join(sorted(arrays))})")
    if index >= len(arrays[key]):
        raise DataError(path, f"index {index} out of range for {key!r} of length {len(arrays[key])}")
    image = arrays[key][index]
    if image.ndim == 3 and image.shape[-1] == 3:  # a 2D RGB item
        image = image[None]
    return Volume(_as_instances(image, path))


def read_nifti(path):
    """Axial slices `(Z, Y, X)` of the closest canonical (RAS+) orientation, anterior up."""
    import nibabel

    image = nibabel.as_closest_canonical(nibabel.load(path))
    data = np.asarray(image.dataobj)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise DataError(path, f"wrong dimensions {data.shape}: expected a 3D NIfTI volume")
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
            raise DataError(file, f"unreadable DICOM file ({_describe(error)})") from None
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
            raise DataError(file, f"unreadable DICOM pixel data ({_describe(error)})") from None
        pixels = pixels * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
        arrays.append(pixels[None] if pixels.ndim == 2 else pixels)  # multi-frame files stay 3D
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(path, f"DICOM slices of different sizes {sorted(shapes)}")
    array = np.concatenate(arrays, axis=0)
    spacing = None
    first = slices[0][1]
    if hasattr(first, "PixelSpacing"):
        gap = abs(position(slices[1]) - position(slices[0])) if len(slices) > 1 else float(getattr(first, "SliceThickness", 0) or 0)
        spacing = (gap, float(first.PixelSpacing[0]), float(first.PixelSpacing[1]))
    return Volume(array, spacing=spacing, meta={"series": series.pop()})


def read_tiff(path):
    """Pages of a (multi-page) TIFF: `(S, H, W)` or `(S, H, W, C)`."""
    import tifffile

    array = tifffile.imread(path)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and len(tifffile.TiffFile(path).pages) == 1:
        array = array[None]  # one RGB page
    return Volume(_as_instances(array, path))


def _read_image(path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decode now: truncated files fail here
        if image.mode in ("RGBA", "P", "LA", "CMYK", "YCbCr"):
            image = image.convert("RGB")
        return np.asarray(image)


def natural_key(name):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_folder(path):
    files = sorted((f for f in os.listdir(path) if not f.startswith(".")), key=natural_key)
    files = [os.path.join(path, f) for f in files if os.path.isfile(os.path.join(path, f))]
    if not files:
        raise DataError(path, "empty folder: expected DICOM slices or image files")
    if any(f.lower().endswith(".dcm") for f in files) or _looks_like_dicom(files[0]):
        return read_dicom_series([f for f in files if not f.lower().endswith((".txt", ".json", ".md"))], path)
    images = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES + TIFF_SUFFIXES)]
    if not images:
        raise DataError(path, "no DICOM or image files in folder")
    slices = []
    for file in images:
        try:
            slices.append(_read_image(file))
        except Exception as error:  # noqa: BLE001
            raise DataError(file, f"unreadable image ({_describe(error)})") from None
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise DataError(path, f"images of different sizes in one stack: {sorted(shapes)}")
    return Volume(np.stack(slices))


def _looks_like_dicom(file):
    with open(file, "rb") as f:
        header = f.read(132)
    return header[128:132] == b"DICM"

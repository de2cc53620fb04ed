"""Bad inputs, one per case: each builds its bad file(s) in `tmp_path` and expects one exact error.

Every case asserts the error type (DataError, or ValueError for bad arguments), that the message
starts with the file (or manifest / folder) at fault, and the cause; messages are one line and name
arguments, not command-line flags. A timer guards every case, so a reader that blocks (a named pipe)
fails the test instead of hanging it; the pickled inputs would create a marker file if unpickled.
"""

import collections
import csv
import gzip
import os
import re
import signal
import struct
import zipfile
import zlib

import numpy as np
import pytest

from mims_tf.data import (
    BagSource,
    DataError,
    assign_splits,
    from_class_folders,
    from_medmnist,
    from_rows,
    normalize_volume,
    read_manifest,
    read_volume,
)
from tests.conftest import SHARED
from tests.data.test_readers import _write_dicom_series

KATHER_TILE = os.path.join(SHARED, "data", "kather-crc-msi", "MSS_JPEG")
CASES = {}


def case(name):
    def register(build):
        assert name not in CASES
        CASES[name] = build
        return build

    return register


def data_error(path, cause):
    """(DataError, a regex): the message starts with `path: ` and then names `cause` (a regex)."""
    return DataError, "^" + re.escape(f"{path}: ") + ".*" + cause


def value_error(argument, cause):
    """(ValueError, a regex): names the cause and the argument received."""
    return ValueError, cause + ".*Received: .*" + re.escape(f"{argument}=")


# --- small writers --------------------------------------------------------------------------------


def _npy(path, array):
    np.save(path, array)
    return path


def _png(path, shape=(6, 7), value=0):
    from PIL import Image

    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def _png_header(path, width, height):
    """A PNG whose header declares `width x height` (and no pixel data)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _npy_header(path, shape, dtype="<f4", payload=b"\0" * 64):
    """A .npy whose header declares `shape`, followed by a few bytes of data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(payload)
    return path


class _Unpickled:
    """Pickles as a call that creates a marker file: loading it would run code."""

    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled(tmp, marker_name="ran"):
    _Unpickled.marker = str(tmp / marker_name)
    return np.array([_Unpickled(), 1], dtype=object)


def _nifti(path, shape, dtype=np.float32, value=0.0):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.full(shape, value, dtype), np.eye(4)), path)
    return path


def _nifti_declaring(tmp, name, dims):
    """A small NIfTI whose header's dim field is rewritten to declare `dims` (data left small)."""
    plain = _nifti(tmp / "small.nii", (2, 2, 2))
    data = bytearray(plain.read_bytes())
    data[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    path = tmp / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(data)))
    else:
        path.write_bytes(bytes(data))
    return path


def _fifo(path):
    os.mkfifo(path)
    return path


def _csv(tmp, text, name="m.csv", files=("a.png", "b.png", "c.png")):
    for file in files:
        (tmp / file).write_bytes(b"")
    path = tmp / name
    path.write_text(text)
    return path


def _tiles(tmp, patients=20, tiles=5, name="tile{t}-TCGA-AA-{p:04d}-01Z.png"):
    """Class folders of empty tiles, named by patient: patients alternate between the two classes."""
    root = tmp / "tiles"
    for p in range(patients):
        folder = root / ("MSI" if p % 2 else "MSS")
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(tiles):
            (folder / name.format(t=t, p=p)).write_bytes(b"")
    return root


def _medmnist(path, **arrays):
    np.savez(path, **arrays)
    return path


# --- readers: missing, empty, wrong type ----------------------------------------------------------


@case("missing file")
def _(tmp):
    return lambda: read_volume(tmp / "none.nii.gz"), *data_error(tmp / "none.nii.gz", "file not found")


@case("dangling symlink")
def _(tmp):
    os.symlink(tmp / "gone.npy", tmp / "link.npy")
    return lambda: read_volume(tmp / "link.npy"), *data_error(tmp / "link.npy", "file not found")


for _suffix in (".npy", ".png", ".jpg", ".tif", ".nii.gz", ".dcm", ".npz", ".vol", ".bmp"):

    def _empty(tmp, suffix=_suffix):
        path = tmp / f"empty{suffix}"
        path.write_bytes(b"")
        target = f"{path}#train_images/0" if suffix == ".npz" else path
        return lambda: read_volume(target), *data_error(path, re.escape("empty file (0 bytes)"))

    case(f"zero-byte {_suffix}")(_empty)


@case("random bytes .png")
def _(tmp):
    path = tmp / "noise.png"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


@case(".npy named .png (wrong extension)")
def _(tmp):
    path = tmp / "array.png"
    np.save(tmp / "array.npy", np.zeros((3, 4, 4), np.float32))
    os.replace(tmp / "array.npy", path)
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


@case("PNG named .npy (wrong extension)")
def _(tmp):
    path = tmp / "image.npy"
    _png(tmp / "image.png")
    os.replace(tmp / "image.png", path)
    return lambda: read_volume(path), *data_error(path, r"unreadable or corrupt \.npy file: not a NumPy array")


@case("text named .nii")
def _(tmp):
    path = tmp / "notes.nii"
    path.write_text("not an image at all\n" * 40)
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


@case("unknown suffix")
def _(tmp):
    path = tmp / "scan.xyz"
    path.write_bytes(b"x")
    return lambda: read_volume(path), *data_error(path, r"unknown file type \(supported: ")


@case("no suffix")
def _(tmp):
    path = tmp / "scan"
    path.write_bytes(b"x")
    return lambda: read_volume(path), *data_error(path, "unknown file type")


@case("named pipe as scan.npy")
def _(tmp):
    path = _fifo(tmp / "scan.npy")
    return lambda: read_volume(path), *data_error(path, re.escape("not a regular file (a named pipe)"))


@case("named pipe as npz item")
def _(tmp):
    path = _fifo(tmp / "data.npz")
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(path, "not a regular file")


@case("unix socket as scan.png")
def _(tmp):
    import socket

    path = tmp / "scan.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))

    def read():
        try:
            read_volume(path)
        finally:
            server.close()

    return read, *data_error(path, re.escape("not a regular file (a socket)"))


@case("character device")
def _(tmp):
    return lambda: read_volume("/dev/null"), *data_error("/dev/null",
                                                         re.escape("not a regular file (a character device)"))


@case("'#' in a .npy name is part of the file name")
def _(tmp):
    (tmp / "scan").write_bytes(b"x")  # the part before '#' exists: it must not be read instead
    return lambda: read_volume(tmp / "scan#1.npy"), *data_error(tmp / "scan#1.npy", "file not found")


# --- folders ------------------------------------------------------------------------------------------


@case("empty folder")
def _(tmp):
    (tmp / "empty").mkdir()
    return lambda: read_volume(tmp / "empty"), *data_error(tmp / "empty", "empty folder")


@case("folder of hidden files only")
def _(tmp):
    (tmp / "hidden").mkdir()
    _png(tmp / "hidden" / ".slice1.png")
    return lambda: read_volume(tmp / "hidden"), *data_error(tmp / "hidden", "empty folder")


@case("folder with no images")
def _(tmp):
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("hello")
    (tmp / "notes" / "table.csv").write_text("a,b\n")
    return lambda: read_volume(tmp / "notes"), *data_error(tmp / "notes", "no DICOM or image files in folder")


@case("folder with a corrupt image")
def _(tmp):
    (tmp / "stack").mkdir()
    _png(tmp / "stack" / "slice1.png")
    (tmp / "stack" / "slice2.png").write_bytes(b"\x89PNG garbage" * 10)
    return lambda: read_volume(tmp / "stack"), *data_error(tmp / "stack" / "slice2.png", "unreadable image")


@case("folder with a zero-byte image")
def _(tmp):
    (tmp / "stack").mkdir()
    _png(tmp / "stack" / "slice1.png")
    (tmp / "stack" / "slice2.png").write_bytes(b"")
    return lambda: read_volume(tmp / "stack"), *data_error(tmp / "stack" / "slice2.png", "empty file")


@case("folder of images of different sizes")
def _(tmp):
    (tmp / "stack").mkdir()
    _png(tmp / "stack" / "a.png", (4, 4))
    _png(tmp / "stack" / "b.png", (5, 4))
    return lambda: read_volume(tmp / "stack"), *data_error(tmp / "stack", "images of different sizes in one stack")


@case("folder holding a named pipe")
def _(tmp):
    (tmp / "stack").mkdir()
    _png(tmp / "stack" / "slice1.png")
    _fifo(tmp / "stack" / "slice2.png")
    return lambda: read_volume(tmp / "stack"), *data_error(tmp / "stack" / "slice2.png", "not a regular file")


@case("folder holding a multi-page TIFF")
def _(tmp):
    import tifffile

    (tmp / "stack").mkdir()
    tifffile.imwrite(tmp / "stack" / "slice1.tif", np.zeros((4, 5), np.uint8))
    tifffile.imwrite(tmp / "stack" / "slice2.tif", np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    return lambda: read_volume(tmp / "stack"), *data_error(tmp / "stack" / "slice2.tif",
                                                           "TIFF of 3 pages in a folder stack")


@case("folder with an oversized image")
def _(tmp):
    (tmp / "stack").mkdir()
    _png_header(tmp / "stack" / "slice1.png", 100_000, 100_000)
    return lambda: read_volume(tmp / "stack"), *data_error(tmp / "stack" / "slice1.png", "refused before decoding")


# --- DICOM ---------------------------------------------------------------------------------------


@case("unreadable DICOM file")
def _(tmp):
    path = tmp / "bad.dcm"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    return lambda: read_volume(path), *data_error(path, "unreadable")


@case("unreadable DICOM slice in a series folder")
def _(tmp):
    _write_dicom_series(tmp / "series", [1.0, 2.0])
    (tmp / "series" / "slice_05.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    return lambda: read_volume(tmp / "series"), *data_error(tmp / "series" / "slice_05.dcm", "unreadable DICOM")


@case("DICOM without pixel data")
def _(tmp):
    import pydicom

    _write_dicom_series(tmp / "series", [1.0])
    path = tmp / "series" / "slice_00.dcm"
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    return lambda: read_volume(path), *data_error(path, re.escape("unreadable DICOM file: no pixel data"))


@case("DICOM folder with two series")
def _(tmp):
    _write_dicom_series(tmp / "mixed", [1.0, 2.0], series_uid="1.2.3")
    _write_dicom_series(tmp / "other", [3.0], series_uid="9.9.9")
    os.replace(tmp / "other" / "slice_00.dcm", tmp / "mixed" / "slice_99.dcm")
    return lambda: read_volume(tmp / "mixed"), *data_error(tmp / "mixed", "holds 2 DICOM series")


@case("DICOM slices of different sizes")
def _(tmp):
    _write_dicom_series(tmp / "mixed", [1.0, 2.0], shape=(4, 5))
    _write_dicom_series(tmp / "other", [3.0], shape=(6, 5))
    os.replace(tmp / "other" / "slice_00.dcm", tmp / "mixed" / "slice_99.dcm")
    return lambda: read_volume(tmp / "mixed"), *data_error(tmp / "mixed", "DICOM slices of different sizes")


# --- NIfTI ----------------------------------------------------------------------------------------


@case("NIfTI with 5 dims")
def _(tmp):
    path = _nifti(tmp / "v.nii.gz", (2, 3, 4, 2, 2))
    return lambda: read_volume(path), *data_error(path, re.escape("wrong dimensions (2, 3, 4, 2, 2)"))


@case("NIfTI holding NaN")
def _(tmp):
    path = _nifti(tmp / "v.nii.gz", (3, 4, 5), value=np.nan)
    return lambda: read_volume(path), *data_error(path, re.escape("contains NaN or Inf values (60 of 60)"))


@case("NIfTI with zero slices")
def _(tmp):
    path = _nifti_declaring(tmp, "v.nii", (4, 4, 0))
    return lambda: read_volume(path), *data_error(path, "empty volume")


@case("NIfTI header declaring a huge volume (.nii)")
def _(tmp):
    path = _nifti_declaring(tmp, "huge.nii", (30000, 30000, 30000))
    return lambda: read_volume(path), *data_error(
        path, re.escape("header declares (30000, 30000, 30000)") + ".*truncated or corrupt")


@case("NIfTI header declaring a huge volume (.nii.gz)")
def _(tmp):
    path = _nifti_declaring(tmp, "huge.nii.gz", (30000, 30000, 30000))
    return lambda: read_volume(path), *data_error(path, "more than the file of .* bytes can hold")


@case("truncated .nii.gz")
def _(tmp):
    _nifti(tmp / "full.nii.gz", (20, 20, 20), value=1.0)
    data = (tmp / "full.nii.gz").read_bytes()
    path = tmp / "cut.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


# --- .npy -----------------------------------------------------------------------------------------


def _npy_case(name, array, cause):
    @case(name)
    def _(tmp):
        path = _npy(tmp / "v.npy", array)
        return lambda: read_volume(path), *data_error(path, cause)


_npy_case(".npy with 5 dims", np.zeros((2, 2, 2, 2, 2), np.float32), re.escape("wrong dimensions (2, 2, 2, 2, 2)"))
_npy_case(".npy with 1 dim", np.zeros(5, np.float32), re.escape("wrong dimensions (5,)"))
_npy_case(".npy scalar", np.float32(3), re.escape("wrong dimensions ()"))
_npy_case(".npy with zero slices", np.zeros((0, 4, 4), np.float32), re.escape("empty volume, shape (0, 4, 4)"))
_npy_case(".npy with 7 channels", np.zeros((2, 4, 4, 7), np.float32), re.escape("wrong dimensions (2, 4, 4, 7)"))
_npy_case(".npy holding NaN", np.where(np.eye(4)[None] > 0, np.nan, 0).astype(np.float32),
          re.escape("contains NaN or Inf values (4 of 16)"))
_npy_case(".npy holding Inf", np.full((2, 3, 3), np.inf, np.float16),
          re.escape("contains NaN or Inf values (18 of 18)"))
_npy_case("float64 .npy beyond float32 (1e39)", np.array([[[0.0, 1e39], [1.0, 2.0]]]),
          re.escape("values beyond float32's range (largest magnitude 1e+39"))
_npy_case(".npy of strings", np.array([[["a", "b"]]]), re.escape("unsupported pixel type <U1"))
_npy_case(".npy of complex numbers", np.zeros((2, 3, 3), np.complex64), re.escape("unsupported pixel type complex64"))
_npy_case("RGB image saved as (H, W, 3) .npy", np.zeros((40, 40, 3), np.uint8),
          re.escape("shape (40, 40, 3) reads as 40 slices of 40 x 3 px: an RGB image saved as (H, W, 3)?"))


@case(".npy of pickled objects")
def _(tmp):
    path = _npy(tmp / "v.npy", _pickled(tmp))
    return lambda: read_volume(path), *data_error(path, r"holds pickled Python objects .*refused")


@case(".npy header declaring an absurd shape")
def _(tmp):
    path = _npy_header(tmp / "v.npy", (100000, 100000, 100000))
    return lambda: read_volume(path), *data_error(
        path, re.escape("declares shape (100000, 100000, 100000)") + ".*truncated or corrupt")


@case("truncated .npy data")
def _(tmp):
    data = _npy(tmp / "full.npy", np.ones((4, 8, 8), np.float32)).read_bytes()
    path = tmp / "cut.npy"
    path.write_bytes(data[:-100])
    return lambda: read_volume(path), *data_error(
        path, r"declares shape \(4, 8, 8\) of float32 \(1024 bytes\) but holds 924 bytes")


@case("truncated .npy header")
def _(tmp):
    path = tmp / "cut.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr'")
    return lambda: read_volume(path), *data_error(path, r"unreadable or corrupt \.npy file")


# --- .npz ---------------------------------------------------------------------------------------


@case("truncated .npz")
def _(tmp):
    data = _medmnist(tmp / "full.npz", train_images=np.ones((3, 4, 4), np.uint8)).read_bytes()
    path = tmp / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(path, r"unreadable or corrupt \.npz file")


@case("non-zip file named .npz")
def _(tmp):
    path = tmp / "fake.npz"
    path.write_text("path,label\n")
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(path,
                                                                      r"unreadable or corrupt \.npz file: not a zip")


@case(".npz with pickled arrays")
def _(tmp):
    path = _medmnist(tmp / "p.npz", train_images=_pickled(tmp))
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(
        path, r"array 'train_images' holds pickled Python objects")


@case(".npz member with a damaged body")
def _(tmp):
    path = tmp / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train_images.npy", b"\x93NUMPY garbage")
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(path,
                                                                      r"unreadable or corrupt array 'train_images'")


@case(".npz member header declaring an absurd shape")
def _(tmp):
    _npy_header(tmp / "member.npy", (10**6, 10**6))
    path = tmp / "big.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(tmp / "member.npy", "train_images.npy")
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(
        path, r"array 'train_images' declares shape \(1000000, 1000000\)")


@case(".npz path without an item")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.ones((3, 4, 4), np.uint8))
    return lambda: read_volume(path), *data_error(path, "name an array item")


@case(".npz negative index")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.ones((3, 4, 4), np.uint8))
    return lambda: read_volume(f"{path}#train_images/-1"), *data_error(path,
                                                                       "name an array item .*got 'train_images/-1'")


@case(".npz unknown array")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.ones((3, 4, 4), np.uint8))
    return lambda: read_volume(f"{path}#nope/0"), *data_error(path, re.escape("no array 'nope' (has train_images)"))


@case(".npz index out of range")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.ones((3, 4, 4), np.uint8))
    return lambda: read_volume(f"{path}#train_images/03"), *data_error(
        path, "index 3 out of range for 'train_images' of length 3")


@case(".npz scalar array")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.float32(1))
    return lambda: read_volume(f"{path}#train_images/0"), *data_error(path, "is a scalar")


@case(".npz item holding NaN")
def _(tmp):
    images = np.zeros((2, 3, 4, 4), np.float32)
    images[1, 0, 0, 0] = np.nan
    path = _medmnist(tmp / "d.npz", train_images=images)
    item = f"{path}#train_images/1"
    return lambda: read_volume(item), *data_error(item, re.escape("contains NaN or Inf values (1 of 48)"))


@case(".npz float64 item beyond float32")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.full((2, 3, 4, 4), 1e39))
    item = f"{path}#train_images/0"
    return lambda: read_volume(item), *data_error(item, "values beyond float32's range")


# --- TIFF and 2D images ---------------------------------------------------------------------------


@case("TIFF pages of different sizes")
def _(tmp):
    import tifffile

    path = tmp / "pages.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8))
    tifffile.imwrite(path, np.zeros((6, 5), np.uint8), append=True)
    return lambda: read_volume(path), *data_error(
        path, re.escape("TIFF pages of different sizes (page 1: (4, 5); page 2: (6, 5))"))


@case("truncated TIFF")
def _(tmp):
    import tifffile

    tifffile.imwrite(tmp / "full.tif", np.ones((5, 64, 64), np.uint16))
    data = (tmp / "full.tif").read_bytes()
    path = tmp / "cut.tif"
    path.write_bytes(data[:200])
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


@case("TIFF holding NaN")
def _(tmp):
    import tifffile

    path = tmp / "nan.tif"
    tifffile.imwrite(path, np.full((2, 4, 4), np.nan, np.float32))
    return lambda: read_volume(path), *data_error(path, re.escape("contains NaN or Inf values (32 of 32)"))


@case("PNG header declaring 100000x100000 (decompression bomb)")
def _(tmp):
    path = _png_header(tmp / "bomb.png", 100_000, 100_000)
    return lambda: read_volume(path), *data_error(path,
                                                  r"image too large, refused before decoding .*10000000000 pixels")


@case("PNG header over MAX_IMAGE_PIXELS")
def _(tmp):
    path = _png_header(tmp / "big.png", 10_000, 10_000)
    return lambda: read_volume(path), *data_error(path,
                                                  r"image of 10000x10000 pixels is over the limit .*MAX_IMAGE_PIXELS")


@case("truncated PNG")
def _(tmp):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp / "full.png")
    data = (tmp / "full.png").read_bytes()
    path = tmp / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


@case("truncated JPEG (a real Kather tile)")
def _(tmp):
    tile = os.path.join(KATHER_TILE, sorted(os.listdir(KATHER_TILE))[0])
    data = open(tile, "rb").read()
    path = tmp / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    return lambda: read_volume(path), *data_error(path, "unreadable or corrupt file")


# --- OCT ----------------------------------------------------------------------------------------


@case("random bytes .vol")
def _(tmp):
    path = tmp / "bad.vol"
    path.write_bytes(np.random.default_rng(2).bytes(3000))
    return lambda: read_volume(path), *data_error(path, "unreadable")


@case("Cirrus .img of unknown size")
def _(tmp):
    path = tmp / "odd.img"
    np.zeros(1234, np.uint8).tofile(path)
    return lambda: read_volume(path), *data_error(path, "unknown Cirrus layout")


# --- manifests (CSV) -------------------------------------------------------------------------------


def _manifest_case(name, text, cause, **kwargs):
    @case(name)
    def _(tmp):
        path = _csv(tmp, text)
        return lambda: read_manifest(path, **kwargs), *data_error(path, cause)


_manifest_case("CSV without a path column", "file,label\na.png,x\n", re.escape("missing column(s) path"))
_manifest_case("CSV without a label column", "path,bag\na.png,p1\n", re.escape("missing column(s) label"))
_manifest_case("empty CSV", "", re.escape("missing column(s) path, label"))
_manifest_case("CSV with a header only", "path,label,bag,split\n", "manifest has no rows")
_manifest_case("CSV with a duplicate column", "path,label,label\na.png,x,y\n",
               re.escape("column(s) label appear more than once"))
_manifest_case("CSV separated by semicolons", "path;label\na.png;x\n",
               re.escape("missing column(s) path, label; a manifest has path, label, bag, split (the header holds ';'"))
_manifest_case("CSV with a value under a nameless column", "path,label,,\na.png,x,,oops\n",
               re.escape("row 2: a value under a column without a name"), check_files=False)
_manifest_case("NUL byte in a bag name", "path,label,bag\na.png,x,p\x001\n",
               re.escape("row 2: the bag holds a control character (e.g. NUL): 'p\\x001'"), check_files=False)
_manifest_case("CSV row with more fields than the header", "path,label,bag,split\na.png,x,p1,train,extra\n",
               re.escape("row 2: 1 more field(s) than the 4 columns of the header"))
_manifest_case("duplicate paths", "path,label,bag,split\na.png,x,p1,train\na.png,x,p1,train\n",
               r"duplicate path .*a\.png \(rows 2 and 3\)")
_manifest_case("duplicate paths spelled differently", "path,label\na.png,x\n./a.png,x\n",
               r"duplicate path .*a\.png \(rows 2 and 3\)")
_manifest_case("duplicate .npz item #1 and #01", "path,label\nd.npz#train_images/1,x\nd.npz#train_images/01,x\n",
               re.escape("d.npz#train_images/1 (rows 2 and 3)"), check_files=False)
_manifest_case("bag with mixed labels", "path,label,bag,split\na.png,x,p1,train\nb.png,y,p1,train\n",
               re.escape("bag 'p1' has rows with different labels: x, y"))
_manifest_case("bag across splits", "path,label,bag,split\na.png,x,p1,train\nb.png,x,p1,test\n",
               re.escape("bag 'p1' is in several splits: test, train"))
_manifest_case("group across splits", "path,label,bag,group,split\na.png,x,e1,pat1,train\nb.png,x,e2,pat1,val\n",
               re.escape("group 'pat1' is in several splits: train, val"))
_manifest_case("unknown split name", "path,label,bag,split\na.png,x,p1,train\nb.png,x,p2,tran\n",
               re.escape("row 3: unknown split 'tran' (splits: train, val, test)"))
_manifest_case("partly empty split column", "path,label,bag,split\na.png,x,p1,train\nb.png,x,p2,\nc.png,y,p3,\n",
               re.escape("rows 3, 4: empty split while other rows have one"))
_manifest_case("partly empty split after a blank line (line numbers)",
               "path,label,bag,split\na.png,x,p1,train\n\nb.png,x,p2,\n",
               re.escape("row 4: empty split"))
_manifest_case("empty label", "path,label,bag,split\na.png,x,p1,train\nb.png,,p2,test\n",
               re.escape("row 3: empty label"))
_manifest_case("empty path", "path,label\n,x\n", re.escape("row 2: empty path"))
_manifest_case("labels outside declared classes", "path,label\na.png,x\nb.png,z\nc.png,z\n",
               re.escape("rows 3, 4: unknown label 'z' (classes: x, y)"), classes=["x", "y"])
_manifest_case("TCGA patient in two splits",
               "path,label,bag,split\nblk-A-TCGA-AA-1234-01Z.jpg,x,t1,train\nblk-B-TCGA-AA-1234-01Z.jpg,x,t2,test\n",
               re.escape("TCGA patient 'TCGA-AA-1234' is in two splits: train (row 2) and test (row 3)")
               + ".*allow_shared_groups=True", check_files=False)
_manifest_case("group_pattern match in two splits", "path,label,bag,split\np7_t1.png,x,t1,train\np7_t2.png,x,t2,val\n",
               re.escape("group 'p7' is in two splits: train (row 2) and val (row 3)"), check_files=False,
               group_pattern=r"^(p\d+)_")


@case("label typo (l for 1) without declared classes")
def _(tmp):
    rows = [f"v{i}.npy,{i % 2}" for i in range(150)] + ["v150.npy,l"]
    path = _csv(tmp, "path,label\n" + "\n".join(rows) + "\n", files=())
    cause = re.escape("row 152: label 'l' is on only 1 of 151 rows") + ".*declare the classes"
    return lambda: read_manifest(path, check_files=False), *data_error(path, cause)


@case("listed file missing")
def _(tmp):
    path = _csv(tmp, "path,label,bag,split\nmissing.png,x,p1,train\n")
    cause = re.escape(f"file not found (row 2 of {path})")
    return lambda: read_manifest(path), *data_error(tmp / "missing.png", cause)


@case("manifest not found")
def _(tmp):
    return lambda: read_manifest(tmp / "none.csv"), *data_error(tmp / "none.csv", "manifest not found")


@case("manifest is a folder")
def _(tmp):
    (tmp / "m.csv").mkdir()
    return lambda: read_manifest(tmp / "m.csv"), *data_error(tmp / "m.csv", "is a folder, not a manifest CSV file")


@case("manifest is a named pipe")
def _(tmp):
    path = _fifo(tmp / "m.csv")
    return lambda: read_manifest(path), *data_error(path, re.escape("not a regular file (a named pipe)"))


@case("manifest that is not UTF-8")
def _(tmp):
    path = tmp / "m.csv"
    path.write_bytes(b"path,label\n\xff\xfe\xfa.png,x\n")
    return lambda: read_manifest(path), *data_error(path, "not a readable CSV file")


@case("invalid group_pattern")
def _(tmp):
    path = _csv(tmp, "path,label,split\na.png,x,train\n")
    return lambda: read_manifest(path, group_pattern="(unclosed"), *value_error("group_pattern",
                                                                                "not a valid regular expression")


# --- class folders, splits, MedMNIST files, rows ----------------------------------------------------------


@case("class folders without a grouping")
def _(tmp):
    root = _tiles(tmp, patients=2)
    cause = (re.escape("grouping of files into bags must be given: a bag pattern (bag_pattern")
             + ".*one_bag_per_file=True")
    return lambda: from_class_folders(root, classes=["MSS", "MSI"]), *data_error(root, cause)


@case("class folders with both groupings")
def _(tmp):
    root = _tiles(tmp, patients=2)
    return lambda: from_class_folders(root, bag_pattern="TCGA", one_bag_per_file=True), *value_error(
        "bag_pattern", "either `bag_pattern` or `one_bag_per_file=True`")


@case("class folders root missing")
def _(tmp):
    return lambda: from_class_folders(tmp / "none", one_bag_per_file=True), *data_error(tmp / "none",
                                                                                        "folder not found")


@case("root without class folders")
def _(tmp):
    (tmp / "root").mkdir()
    (tmp / "root" / "a.png").write_bytes(b"")
    return lambda: from_class_folders(tmp / "root", one_bag_per_file=True), *data_error(tmp / "root",
                                                                                        "no class folders")


@case("declared class without a folder")
def _(tmp):
    root = _tiles(tmp, patients=2)
    return lambda: from_class_folders(root, classes=["MSS", "MSIH"], one_bag_per_file=True), *data_error(
        root, re.escape("no class folder(s) MSIH (has MSI, MSS)"))


@case("class folder without images")
def _(tmp):
    root = _tiles(tmp, patients=2)
    (root / "EMPTY").mkdir()
    (root / "EMPTY" / "notes.txt").write_text("x")
    return lambda: from_class_folders(root, classes=["MSS", "EMPTY"], one_bag_per_file=True), *data_error(
        root / "EMPTY", "class folder without files ending in")


@case("file name not matching bag_pattern")
def _(tmp):
    root = _tiles(tmp, patients=2)
    (root / "MSS" / "stray.png").write_bytes(b"")
    return lambda: from_class_folders(root, bag_pattern=r"TCGA-\w\w-\w\w\w\w", classes=["MSS", "MSI"]), *data_error(
        root / "MSS" / "stray.png", "file name does not match bag_pattern")


@case("invalid bag_pattern")
def _(tmp):
    root = _tiles(tmp, patients=2)
    return lambda: from_class_folders(root, bag_pattern="TCGA-(", classes=["MSS", "MSI"]), *value_error(
        "bag_pattern", "not a valid regular expression")


@case("duplicate declared classes")
def _(tmp):
    root = _tiles(tmp, patients=2)
    return lambda: from_class_folders(root, classes=["MSS", "MSS"], one_bag_per_file=True), *value_error(
        "classes", "names MSS more than once")


@case("assign_splits with a partly filled split column")
def _(tmp):
    rows = [{"path": f"/v{i}.npy", "label": i % 2, "split": "train" if i == 3 else ""} for i in range(20)]
    manifest = from_rows(rows)
    return lambda: assign_splits(manifest), *data_error("<rows>",
                                                        re.escape("rows 1, 2, 3, 5") + ".*empty split .*never moved")


@case("assign_splits with fractions not summing to 1")
def _(tmp):
    manifest = from_rows([{"path": f"/v{i}.npy", "label": i % 2} for i in range(20)])
    return lambda: assign_splits(manifest, fractions=(0.8, 0.2, 0.2)), *value_error("fractions", "summing to 1")


@case("assign_splits with too few bags")
def _(tmp):
    manifest = from_rows([{"path": f"/v{i}.npy", "label": i % 2} for i in range(4)])
    return lambda: assign_splits(manifest), *data_error("<rows>", re.escape("too few groups (4) for a test split"))


@case("rows: a bag across splits")
def _(tmp):
    rows = [{"path": "/a.npy", "label": 0, "bag": "p", "split": "train"},
            {"path": "/b.npy", "label": 0, "bag": "p", "split": "val"}]
    return lambda: from_rows(rows), *data_error("<rows>", re.escape("bag 'p' is in several splits: train, val"))


@case("rows: duplicate declared classes")
def _(tmp):
    return lambda: from_rows([{"path": "/a.npy", "label": 0}], classes=["0", 0]), *value_error("classes",
                                                                                               "names 0 more than once")


@case("MedMNIST file missing")
def _(tmp):
    return lambda: from_medmnist(tmp / "none.npz"), *data_error(tmp / "none.npz", "file not found")


@case("MedMNIST file without labels")
def _(tmp):
    path = _medmnist(tmp / "d.npz", images=np.zeros((3, 4, 4), np.uint8))
    return lambda: from_medmnist(path), *data_error(path, "no <split>_labels arrays: not a MedMNIST-style file")


@case("MedMNIST file truncated")
def _(tmp):
    data = _medmnist(tmp / "full.npz", train_images=np.zeros((3, 4, 4), np.uint8),
                     train_labels=np.zeros((3, 1))).read_bytes()
    path = tmp / "cut.npz"
    path.write_bytes(data[:100])
    return lambda: from_medmnist(path), *data_error(path, r"unreadable or corrupt \.npz file")


@case("MedMNIST pickled labels")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=_pickled(tmp))
    return lambda: from_medmnist(path), *data_error(path, "array 'train_labels' holds pickled Python objects")


@case("MedMNIST images and labels of different lengths")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.zeros((4, 4, 4), np.uint8), train_labels=np.zeros((5, 1), np.uint8))
    return lambda: from_medmnist(path), *data_error(path, "train_images has 4 items but train_labels has 5")


@case("MedMNIST labels without images")
def _(tmp):
    path = _medmnist(tmp / "d.npz", val_labels=np.zeros((5, 1), np.uint8))
    return lambda: from_medmnist(path), *data_error(path, "val_labels has no val_images array")


@case("MedMNIST multi-label file")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.zeros((3, 4, 4), np.uint8), train_labels=np.zeros((3, 2), np.uint8))
    return lambda: from_medmnist(path), *data_error(path,
                                                    "train_labels has 2 columns: multi-label files are not supported")


@case("MedMNIST fractional labels")
def _(tmp):
    path = _medmnist(tmp / "d.npz", train_images=np.zeros((3, 4, 4), np.uint8),
                     train_labels=np.array([[0.0], [0.5], [1.0]]))
    return lambda: from_medmnist(path), *data_error(path, "train_labels holds values that are not whole class numbers")


# --- the pipeline ---------------------------------------------------------------------------------


@case("bag mixing instance shapes")
def _(tmp):
    a = _npy(tmp / "a.npy", np.zeros((2, 4, 4), np.float32))
    _npy(tmp / "b.npy", np.zeros((2, 5, 5), np.float32))
    manifest = from_rows([{"path": a, "label": 0, "bag": "p1"}, {"path": tmp / "b.npy", "label": 0, "bag": "p1"}])
    return lambda: BagSource(manifest, progress=False), *data_error(a, re.escape("bag 'p1' mixes instance shapes"))


@case("bag with a float64 file beyond float32 (before caching)")
def _(tmp):
    path = _npy(tmp / "big.npy", np.full((2, 4, 4), -1e39))
    manifest = from_rows([{"path": path, "label": 0}])
    return lambda: BagSource(manifest, progress=False), *data_error(path, "values beyond float32's range")


@case("normalisation window with high <= low")
def _(tmp):
    return lambda: normalize_volume(np.zeros((1, 2, 2)), (5, 5)), *value_error("normalize", "high > low")


@case("empty split asked of a manifest")
def _(tmp):
    manifest = from_rows([{"path": "/a.npy", "label": 0, "split": "train"}])
    return lambda: manifest.bags("val"), *data_error("<rows>", re.escape("split 'val' is empty (train: 1)"))


# --- the test -----------------------------------------------------------------------------------------


def _timeout(signum, frame):
    raise TimeoutError("the reader blocked (more than 20 s)")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning", "ignore:End of file reached:UserWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(tmp_path, name):
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(20)  # nothing may block: a named pipe must be refused, not opened
    try:
        action, kind, pattern = CASES[name](tmp_path)
        with pytest.raises(kind, match=pattern) as info:
            action()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(info.value)
    assert type(info.value) is kind
    assert "\n" not in message and not re.search(r"(^|\s)--\w", message)
    assert not any(tmp_path.glob("ran*")), "a pickled array was unpickled (code ran)"


def test_there_are_at_least_60_distinct_bad_inputs():
    assert len(CASES) >= 60


# --- the same inputs done right are read -----------------------------------------------------------


def test_tiff_written_one_page_at_a_time_keeps_every_page(tmp_path):
    import tifffile

    path = tmp_path / "pages.tif"
    for value in range(4):
        tifffile.imwrite(path, np.full((5, 6), value, np.uint8), append=True)
    volume = read_volume(path).array
    assert volume.shape == (4, 5, 6) and list(volume[:, 0, 0]) == [0, 1, 2, 3]
    tifffile.imwrite(tmp_path / "planar.tif", np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5),
                     photometric="rgb", planarconfig="separate")
    planar = read_volume(tmp_path / "planar.tif").array
    assert planar.shape == (1, 4, 5, 3) and planar[0, 0, 0, 1] == 20


def test_hash_is_part_of_non_npz_names_and_npz_items_normalised(tmp_path):
    np.save(tmp_path / "scan#1.npy", np.ones((2, 3, 3), np.float32))
    assert read_volume(tmp_path / "scan#1.npy").array.shape == (2, 3, 3)
    folder = tmp_path / "run#2"
    folder.mkdir()
    np.savez(folder / "d.npz", train_images=np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4))
    assert read_volume(f"{folder / 'd.npz'}#train_images/02").array[0, 0, 0] == 32
    manifest = from_rows([{"path": f"{folder / 'd.npz'}#train_images/01", "label": 0},
                          {"path": str(tmp_path / "scan#1.npy"), "label": 0}])
    assert manifest.rows[0]["path"] == f"{folder / 'd.npz'}#train_images/1"
    assert manifest.rows[1]["path"] == str(tmp_path / "scan#1.npy")
    manifest.check_files()


def test_manifest_with_byte_order_mark_is_read(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "m.csv"
    path.write_bytes("path,label,bag,split\na.png,x,p1,train\n".encode("utf-8-sig"))
    assert read_manifest(path).rows[0]["path"] == str(tmp_path / "a.png")


def test_entirely_empty_split_column_is_assigned_and_placed_rows_are_kept(tmp_path):
    rows = [{"path": f"/v{i}.npy", "label": i % 2} for i in range(40)]
    drawn = assign_splits(from_rows(rows), seed=0)
    assert {row["split"] for row in drawn.rows} == {"train", "val", "test"}
    text = "path,label,bag,split\n" + "".join(f"v{i}.npy,{i % 2},b{i},{'test' if i < 8 else 'train'}\n"
                                              for i in range(40))
    (tmp_path / "m.csv").write_text(text)
    placed = read_manifest(tmp_path / "m.csv", check_files=False)
    assert [row["split"] for row in placed.rows] == ["test"] * 8 + ["train"] * 32


def test_declared_classes_accept_a_rare_label_and_keep_their_order(tmp_path):
    text = "path,label\n" + "".join(f"v{i}.npy,{i % 2}\n" for i in range(150)) + "v150.npy,2\n"
    (tmp_path / "m.csv").write_text(text)
    manifest = read_manifest(tmp_path / "m.csv", classes=["0", "1", "2"], check_files=False)
    assert manifest.label_counts()["2"] == 1
    root = _tiles(tmp_path, patients=4)
    tiles = from_class_folders(root, bag_pattern=r"TCGA-\w\w-\w\w\w\w", classes=["MSS", "MSI"])
    assert tiles.classes == ["MSS", "MSI"] and len(tiles.bags()) == 4


def test_class_folders_one_bag_per_file_and_shared_groups_allowed(tmp_path, caplog):
    root = _tiles(tmp_path)
    manifest = from_class_folders(root, one_bag_per_file=True)
    assert manifest.classes == ["MSI", "MSS"] and len(manifest.bags()) == 100
    assert "classes not given" in caplog.text and "the last, MSS, is the positive class" in caplog.text
    split = assign_splits(manifest, seed=0, allow_shared_groups=True)
    patients = collections.defaultdict(set)
    for row in split.rows:
        patients[re.search(r"TCGA-AA-\d{4}", row["path"]).group(0)].add(row["split"])
    assert max(len(s) for s in patients.values()) > 1  # the leak the check refuses by default
    grouped = from_class_folders(root, bag_pattern=r"TCGA-\w\w-\w\w\w\w", classes=["MSS", "MSI"])
    by_patient = assign_splits(grouped, seed=0)  # one bag per patient: accepted
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "bag", "split"])
        writer.writeheader()
        writer.writerows({k: row[k] for k in writer.fieldnames} for row in by_patient.rows)
    assert len(read_manifest(path, classes=["MSS", "MSI"]).bags()) == 20
    shared = tmp_path / "shared.csv"
    with open(shared, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "bag", "split"])
        writer.writeheader()
        writer.writerows({k: row[k] for k in writer.fieldnames} for row in split.rows)
    assert len(read_manifest(shared, allow_shared_groups=True).rows) == 100


def test_minmax_of_a_range_beyond_float32_gives_no_nan():
    array = np.array([[[-3e38, 0.0, 3e38]]], np.float32)
    out = normalize_volume(array, "minmax")
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out.ravel(), [0.0, 127.5, 255.0], rtol=1e-6)


def test_real_medmnist_item_through_the_checked_readers():
    path = os.path.join(SHARED, "data", "adrenalmnist3d", "adrenalmnist3d.npz")
    assert read_volume(f"{path}#train_images/003").array.shape == (28, 28, 28)

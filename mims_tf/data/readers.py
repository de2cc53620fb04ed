"""Readers: every supported file becomes a `Volume` of instances `(S, H, W)` or `(S, H, W, C)`.

`read_volume(path)` picks the reader from the path (this module holds the readers of NIfTI and image formats;
`.npy` and `.npz` are read in `mims_tf.data.arrays`, DICOM in `mims_tf.data.dicom`, vendor OCT in `mims_tf.data.oct`):

| path | reader | instances |
|---|---|---|
| `file.npz#key/index` | MedMNIST-style `.npz` item (`mims_tf.data.arrays`) | the slices of a 3D item, or one 2D image |
| `.npy` | NumPy (`mims_tf.data.arrays`) | 2D: one image; 3D: `(S, H, W)`; 4D: `(S, H, W, C)` |
| `.nii`, `.nii.gz` | nibabel | axial slices of the closest canonical (RAS+) orientation, anterior up |
| folder of DICOM files, `.dcm` | pydicom | slices sorted along the slice normal (not by name); multi-frame: frames |
| `.tif`, `.tiff` | tifffile | every page (pages of different sizes are an error) |
| `.png`, `.jpg`, `.jpeg`, `.bmp` | Pillow | one still image |
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
(refused before anything is allocated; one limit for every reader, `mims_tf.data.limits`).

Pixels are what a radiologist's viewer shows, or the file is refused: DICOM after the modality transform
(rescale slope/intercept, per frame in enhanced multi-frame files, or a modality LUT), MONOCHROME1 inverted,
YBR as RGB, palette colours looked up; NIfTI with scl_slope/scl_inter; TIFF MINISWHITE inverted and palette
colours looked up; images turned by their EXIF orientation, 16-bit grey kept 16-bit, palette, CMYK and YCbCr
as RGB; an alpha channel is dropped when opaque. Refused: DICOM folders that are not one clean stack (two
series, sizes or orientations, duplicate or missing positions, multi-frame files among others), compressed
DICOM or TIFF without an installed decoder (the package named), 4D NIfTI series, truncated multi-page TIFFs,
CMYK TIFFs, animated images, 16-bit colour PNGs (Pillow keeps 8 bits) and transparent pixels.
"""

import contextlib
import logging
import math
import os
import re
import stat

import numpy as np

from mims_tf.data.arrays import MAX_DEFLATE_RATIO, read_npy, read_npz_item
from mims_tf.data.dicom import looks_like_dicom, read_dicom_series
from mims_tf.data.errors import DataError, describe
from mims_tf.data.limits import check_size, pixel_limit
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
    """Axial slices `(Z, Y, X)` of the closest canonical (RAS+) orientation, anterior up, scl_slope/inter applied."""
    import nibabel

    image = nibabel.load(path)
    shape = tuple(image.shape)
    if not (len(shape) in (2, 3) or (len(shape) == 4 and shape[-1] == 1)):
        raise DataError(path, f"wrong dimensions {shape}: expected a 3D NIfTI volume"
                              + (f" (a 4D series of {shape[3]} volumes: save one)" if len(shape) == 4 else ""))
    itemsize = image.get_data_dtype().itemsize
    needed = math.prod(shape) * itemsize
    size = os.path.getsize(path)
    room = size * MAX_DEFLATE_RATIO + 1024 if path.lower().endswith(".gz") else size
    if needed > room:
        raise DataError(path, f"header declares {shape} of {image.get_data_dtype()} ({needed} bytes), more than "
                              f"the file of {size} bytes can hold: truncated or corrupt")
    check_size(path, f"header declares {shape} of {image.get_data_dtype()}", math.prod(shape), itemsize)
    image = nibabel.as_closest_canonical(image)
    data = np.asarray(image.dataobj)  # the array proxy applies scl_slope and scl_inter
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    zooms = image.header.get_zooms()[:3]
    array = np.flip(np.transpose(data, (2, 1, 0)), axis=1)
    return Volume(np.ascontiguousarray(array), spacing=tuple(float(z) for z in zooms[::-1]))


class _Log(logging.Handler):
    """Collects a library's logged warnings and errors, which would otherwise be printed."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _logged(name):
    """The warnings library `name` logs inside the block, as a list (silenced)."""
    logger, handler = logging.getLogger(name), _Log()
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_tiff(path):
    """Every page of a (multi-page) TIFF, one instance each: `(S, H, W)` or `(S, H, W, C)`, as a viewer shows it:
    MINISWHITE inverted, palette indices as their colours, an opaque alpha channel dropped.

    Pages written one at a time (separate series) are all read; pages of different sizes are an error, and so is
    a file that ends before its last page (tifffile would read the pages it can and log the rest away).
    """
    import tifffile

    size = os.path.getsize(path)
    with _logged("tifffile") as warnings, tifffile.TiffFile(path) as tiff:
        pages = list(tiff.pages)
        _check_tiff_log(path, warnings)
        if not pages:
            raise DataError(path, "TIFF file without pages")
        limit = pixel_limit()
        shapes = []
        for number, page in enumerate(pages, start=1):
            axes = page.axes
            shape = tuple(int(n) for n in page.shape)
            pixels = math.prod(n for n, axis in zip(shape, axes) if axis not in "S")
            if limit and pixels > limit:
                raise DataError(path, f"page {number} of {shape} holds {pixels} pixels, over the limit of {limit} "
                                      "(PIL.Image.MAX_IMAGE_PIXELS): refused before decoding")
            end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
            if end > size:
                raise DataError(path, f"unreadable or corrupt file (truncated: page {number} of {len(pages)} ends at "
                                      f"byte {end}, past the end of the file of {size} bytes)")
            if page.compression != 1 and not _has_decoder(tifffile, page.compression):
                raise DataError(path, f"page {number} is compressed with {page.compression.name}, and no decoder "
                                      "for it is installed: pip install imagecodecs")
            if page.photometric == tifffile.PHOTOMETRIC.SEPARATED:
                raise DataError(path, "CMYK (separated) TIFF: its colours depend on the viewer; save it as RGB")
            shapes.append(shape)
        if len(set(shapes)) > 1:
            sizes = ", ".join(f"page {i}: {shape}" for i, shape in enumerate(shapes, start=1) if shape != shapes[0])
            raise DataError(path, f"TIFF pages of different sizes (page 1: {shapes[0]}; {sizes})")
        check_size(path, f"TIFF of {len(pages)} pages of {shapes[0]}", len(pages) * math.prod(shapes[0]),
                   pages[0].dtype.itemsize if pages[0].dtype is not None else 1)
        arrays = [_tiff_page(page, path, tifffile) for page in pages]
        _check_tiff_log(path, warnings)
    array = np.stack(arrays)
    if array.ndim == 4 and array.shape[-1] not in (1, 3, 4):
        raise DataError(path, f"wrong dimensions {array.shape}: TIFF pages must be 2D or have 1, 3 or 4 samples")
    return Volume(as_instances(array, path))


# What tifffile logs (and then skips or zeroes) when pages or their data lie past the end of the file or are
# damaged; its other warnings are about metadata and the pixels stay whole.
_TIFF_DAMAGE = re.compile(r"TiffPages|page offset|next page|corrupted|invalid value offset|Missing data|"
                          r"failed to read \d+ bytes|expected \d+ segments|TiffFileError")


def _check_tiff_log(path, messages):
    damage = next((" ".join(m.split()) for m in messages if _TIFF_DAMAGE.search(m)), None)
    if damage:
        raise DataError(path, f"unreadable or corrupt file (truncated or damaged TIFF: {damage})")


def _has_decoder(tifffile, compression):
    try:
        tifffile.TIFF.DECOMPRESSORS[compression]
    except KeyError:
        return False
    return True


def _tiff_page(page, path, tifffile):
    array = page.asarray()
    if page.axes.startswith("S") and array.ndim == 3:  # planar (separate) samples: to channels last
        array = np.moveaxis(array, 0, -1)
    if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:  # 0 is white: invert within the stored range
        if array.dtype.kind not in "bu":
            raise DataError(path, f"MINISWHITE TIFF of {array.dtype} values: only unsigned integers are inverted")
        array = ~array if array.dtype == bool else ((1 << page.bitspersample) - 1 - array).astype(array.dtype)
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        array = np.moveaxis(page.colormap[:, array], 0, -1)
    alpha = any(int(kind) in (1, 2) for kind in page.extrasamples)  # associated or unassociated alpha
    if alpha and array.ndim == 3 and array.shape[-1] in (2, 4):
        array = _without_alpha(array, path)
    return array


def _without_alpha(array, path):
    """`(H, W, C)` with alpha last -> without it, when every pixel is opaque; transparent pixels are refused, as
    what they look like depends on the viewer's background."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return array  # check_volume names the NaN or Inf values
    alpha = array[..., -1]
    opaque = True if alpha.dtype == bool else np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
    transparent = int((alpha != opaque).sum())
    if transparent:
        raise DataError(path, f"{transparent} of {alpha.size} pixels are transparent (alpha channel), and viewers "
                              "show them over different backgrounds: flatten the image (remove its alpha)")
    return array[..., :-1] if array.shape[-1] > 2 else array[..., 0]


def _read_image(path):
    """One still image as a viewer shows it: EXIF orientation applied, 16-bit grey kept 16-bit, palette indices as
    their colours, CMYK and YCbCr as RGB, an opaque alpha channel dropped; animations are refused."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                raise DataError(path, f"image of {width}x{height} pixels is over the limit of {limit} pixels "
                                      "(PIL.Image.MAX_IMAGE_PIXELS): refused before decoding")
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and image.format != "MPO":  # an MPO JPEG's first frame is the photo viewers show
                raise DataError(path, f"animated image with {frames} frames ({image.format}): only still images are "
                                      "read; save the frames as a folder of images or a multi-page TIFF")
            if image.format == "PNG" and image.mode not in ("I;16", "I;16B", "I") and _png_bit_depth(path) == 16:
                raise DataError(path, f"16-bit {image.mode} PNG, which Pillow reads as 8 bits: save it as a 16-bit "
                                      "TIFF (16-bit grey PNGs are read)")
            image.load()  # decode now: truncated files fail here
            image = ImageOps.exif_transpose(image)  # as viewers turn photos
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
            elif image.mode == "1":
                image = image.convert("L")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode in ("La", "RGBa"):  # premultiplied alpha
                image = image.convert(image.mode.upper())
            array = np.asarray(image)
            return _without_alpha(array, path) if image.mode in ("LA", "RGBA") else array
    except Image.DecompressionBombError as error:
        raise DataError(path, f"image too large, refused before decoding ({describe(error)})") from None


def _png_bit_depth(path):
    with open(path, "rb") as f:
        header = f.read(25)
    return header[24] if len(header) == 25 and header[12:16] == b"IHDR" else None


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
    if any(f.lower().endswith(".dcm") for f in files) or looks_like_dicom(files[0]):
        # a DICOMDIR is the index of a medium, not a slice
        return read_dicom_series([f for f in files if not f.lower().endswith((".txt", ".json", ".md"))
                                  and os.path.basename(f).upper() != "DICOMDIR"], path)
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

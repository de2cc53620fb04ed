"""Vendor OCT readers: Heidelberg `.vol` and `.E2E`, Topcon `.fda`/`.fds`, Zeiss Cirrus `.img`.

Each returns a `Volume` of B-scans `(S, depth, A-scans)`. They use the PyPI
libraries `eyepy` and `oct-converter` (`pip install mims-tf[oct]`), working
around what fails with them on real files:

- Heidelberg `.vol`: eyepy's `HeVolReader` parses every scan pattern, but its
  `.volume` refuses circular and radial scans; the B-scans are taken from the
  parsed file directly and mapped to 8 bits with eyepy's `vol_intensity_transform`.
- Heidelberg `.E2E`: eyepy and oct-converter walk the file's directory, which
  is stale in exported or cut files (eyepy finds no series, oct-converter stops
  at a short read). Here the file is scanned for data chunks instead (see
  `read_heidelberg_e2e`), and each B-scan chunk is decoded with eyepy's own
  image structure parser (custom 16-bit float) and `from_e2e_intensity`.
- Topcon `.fda`/`.fds`: oct-converter 0.7 calls `numpy.fromstring` in binary
  mode, removed in NumPy 2; the call is made with a `fromstring` that routes the
  binary mode to `numpy.frombuffer` (same result).
- Zeiss Cirrus `.img`: raw uint8 with no header; oct-converter's `IMG` reads it
  once the layout is known (see `CIRRUS_LAYOUTS`).
"""

import contextlib
import os
import re
import struct

import numpy as np

from mims_tf.data.errors import DataError
from mims_tf.data.volume import Volume

# Cirrus scan protocols: (B-scans, A-scans per B-scan, depth). A file holds
# B-scans * A-scans * depth bytes, B-scan after B-scan, each A-scan's depth
# samples contiguous (oct-converter's layout).
CIRRUS_LAYOUTS = {
    "512x128": (128, 512, 1024),  # Macular Cube 512x128
    "200x200": (200, 200, 1024),  # Macular Cube / Optic Disc Cube 200x200
}

_E2E_CHUNK_MAGIC = b"MDbData"
_E2E_CHUNK_HEADER = struct.Struct("<12sIIIIIIIIiHHII")  # 60 bytes
_E2E_IMAGE_CHUNK = 0x40000000
_E2E_BSCAN = 35652097


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"Reading vendor OCT files needs {module!r}: pip install 'mims-tf[oct]'"
        ) from None


def read_heidelberg_vol(path):
    """Heidelberg Spectralis `.vol` (HSF-OCT-10x): every scan pattern, B-scans as uint8."""
    _require("eyepy")
    from eyepy.core.utils import vol_intensity_transform
    from eyepy.io.he import HeVolReader

    parsed = HeVolReader(path).parsed_file
    if not len(parsed.bscans):
        raise DataError(path, "no B-scans in file")
    data = np.stack([np.asarray(b.data, dtype=np.float32) for b in parsed.bscans])
    spacing = (float(parsed.distance), float(parsed.scale_y), float(parsed.scale_x))
    return Volume(vol_intensity_transform(data), spacing=spacing, meta={"scan_pattern": int(parsed.scan_pattern)})


def read_heidelberg_e2e(path):
    """Heidelberg `.E2E`: the B-scans of every series, in (series, slice) order, as uint8.

    The file is a sequence of chunks, each starting with a 60-byte header
    (`"MDbData"` magic padded to 12 bytes, 4 uint32, then patient, study,
    series ids, int32 slice id, uint16 index, uint16, uint32 type, uint32).
    Chunks of type 0x40000000 hold an image; image type 35652097 is a B-scan.
    The directory's offsets are not used, so exported or cut files read too.
    """
    _require("eyepy")
    from eyepy.core.utils import from_e2e_intensity
    from eyepy.io.he.e2e_format import type1073741824_format

    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(b"CMDb"):
        raise DataError(path, "not a Heidelberg E2E file (no CMDb header)")
    bscans = []
    start = raw.find(_E2E_CHUNK_MAGIC)
    while start >= 0 and start + _E2E_CHUNK_HEADER.size <= len(raw):
        fields = _E2E_CHUNK_HEADER.unpack_from(raw, start)
        _, _, _, _, size, _, _, _, series, slice_id, index, _, chunk_type, _ = fields
        payload = start + _E2E_CHUNK_HEADER.size
        if chunk_type == _E2E_IMAGE_CHUNK and payload + 20 <= len(raw):
            image_type, n_values = struct.unpack_from("<II", raw, payload + 4)
            if image_type == _E2E_BSCAN:
                if payload + 20 + 2 * n_values > len(raw):
                    raise DataError(path, f"truncated B-scan at byte {start}")
                image = type1073741824_format.parse(raw[payload : payload + 20 + 2 * n_values])
                bscan = np.asarray(image.data, dtype=np.float32).reshape(image.height, image.width)
                bscans.append(((series, slice_id, index), from_e2e_intensity(bscan)))
        start = raw.find(_E2E_CHUNK_MAGIC, start + 1)
    if not bscans:
        raise DataError(path, "no B-scans found in E2E file")
    shapes = {b.shape for _, b in bscans}
    if len(shapes) > 1:
        raise DataError(path, f"B-scans of different sizes {sorted(shapes)}")
    bscans.sort(key=lambda item: item[0])
    return Volume(np.stack([b for _, b in bscans]), meta={"series": sorted({k[0] for k, _ in bscans})})


@contextlib.contextmanager
def _numpy2_fromstring():
    """Lets oct-converter 0.7's binary `np.fromstring` calls run on NumPy 2."""
    original = np.fromstring

    def fromstring(string, dtype=float, count=-1, *, sep="", **kwargs):
        if sep == "":
            return np.frombuffer(string, dtype=dtype, count=count).copy()
        return original(string, dtype=dtype, count=count, sep=sep, **kwargs)

    np.fromstring = fromstring
    try:
        yield
    finally:
        np.fromstring = original


def read_topcon(path):
    """Topcon `.fda` / `.fds` (oct-converter): B-scans `(S, depth, A-scans)`."""
    _require("oct_converter")
    from oct_converter.readers import FDA, FDS

    with _numpy2_fromstring():  # the constructors parse the chunk list already
        reader = FDA(path) if path.lower().endswith(".fda") else FDS(path)
        volume = reader.read_oct_volume()
    return Volume(np.asarray(volume.volume), meta={"laterality": getattr(volume, "laterality", None)})


def cirrus_layout(path):
    """Returns (B-scans, A-scans, depth) from the file name or, failing that, the size."""
    name = os.path.basename(path)
    for key, layout in CIRRUS_LAYOUTS.items():
        if re.search(rf"(?<!\d){key}(?!\d)", name):
            return layout
    size = os.path.getsize(path)
    matches = [layout for layout in CIRRUS_LAYOUTS.values() if np.prod(layout) == size]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{k}: {np.prod(v):,} bytes" for k, v in CIRRUS_LAYOUTS.items())
    raise DataError(path, f"unknown Cirrus layout: {size:,} bytes and no 512x128 / 200x200 in the name ({known})")


def read_cirrus_img(path):
    """Zeiss Cirrus `.img` (raw uint8): B-scans `(S, depth, A-scans)`.

    Layouts in `CIRRUS_LAYOUTS`; the layout comes from the protocol in the file
    name (as Cirrus exports name them, e.g. `..._Macular Cube 512x128_..._cube_z.img`)
    or from the file size. The file size must match the layout exactly.
    """
    _require("oct_converter")
    from oct_converter.readers import IMG

    bscans, ascans, depth = cirrus_layout(path)
    size = os.path.getsize(path)
    if size != bscans * ascans * depth:
        raise DataError(path, f"truncated or wrong layout: {size:,} bytes, expected {bscans * ascans * depth:,}")
    volume = IMG(path).read_oct_volume(rows=depth, cols=ascans)
    return Volume(np.stack([np.asarray(b) for b in volume.volume]))

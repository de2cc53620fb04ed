"""DICOM: one series (a folder of slices, or one file, multi-frame too) as a `Volume`, as a viewer shows it.

`read_volume` in `mims_tf.data.readers` dispatches `.dcm` files and folders of DICOM files here (a folder is
DICOM when a file is named `.dcm` or the first file `looks_like_dicom`).

Pixels after the modality transform (rescale slope/intercept, per frame in enhanced multi-frame files, or a
modality LUT), MONOCHROME1 inverted, YBR as RGB, palette colours looked up. Refused, in one line naming the file:
folders that are not one clean stack (two series, sizes or orientations, duplicate or missing positions,
multi-frame files among others), unsupported photometric interpretations, and compressed pixel data without an
installed decoder (the packages named). Sizes are checked against `mims_tf.data.limits.check_size` before any
pixel data is decoded.
"""

import os
import re

import numpy as np

from mims_tf.data.errors import DataError, describe
from mims_tf.data.limits import check_size
from mims_tf.data.volume import Volume

# What a DICOM viewer shows: grey (MONOCHROME2; MONOCHROME1 is inverted), or colour (RGB; YBR as RGB; palette
# indices through their colour table).
DICOM_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT",
                     "PALETTE COLOR")


def read_dicom_series(files, path):
    """The slices of one DICOM series (a folder, or one file), each as a viewer shows it (see `_dicom_pixels`).

    A folder holds one series of 2D slices of one size and orientation, at distinct positions; they are sorted by
    position along the slice normal (`ImagePositionPatient` projected on it), or by `InstanceNumber` where no slice
    has a position. A multi-frame file is read on its own, its frames in stored order. Sizes are checked against
    `check_size` before any pixel data is decoded.
    """
    import pydicom

    slices = []
    for file in files:
        try:
            slices.append((file, pydicom.dcmread(file, defer_size="1 KB")))  # pixel data read when decoded
        except Exception as error:  # noqa: BLE001
            raise DataError(file, f"unreadable DICOM file ({describe(error)})") from None
    for file, ds in slices:
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise DataError(file, "unreadable DICOM file: no pixel data (not an image, or damaged)")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise DataError(path, f"holds {len(series)} DICOM series; put one series per folder")
    slices, gap = _sort_slices(slices, path)
    count = sum(_frames(ds) * ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) for _, ds in slices)
    check_size(path, f"DICOM {'series' if len(slices) > 1 else 'file'} declares {count} samples", count,
               -(-int(slices[0][1].get("BitsAllocated", 8)) // 8))
    array = np.concatenate([_dicom_pixels(file, ds) for file, ds in slices], axis=0)
    first = slices[0][1]
    spacing = None
    if "PixelSpacing" in first:
        gap = gap or float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 0)
        spacing = (gap, float(first.PixelSpacing[0]), float(first.PixelSpacing[1]))
    return Volume(array, spacing=spacing, meta={"series": series.pop()})


def _frames(ds):
    return int(ds.get("NumberOfFrames") or 1)


def _sort_slices(slices, path):
    """`(slices sorted along the slice normal, gap in mm or None)`; refuses a folder that is not one clean stack."""
    if len(slices) == 1:
        return slices, None
    multi = next(((file, ds) for file, ds in slices if _frames(ds) > 1), None)
    if multi:
        raise DataError(multi[0], f"multi-frame DICOM file ({_frames(multi[1])} frames) in a folder of "
                                  f"{len(slices)} files: read it on its own")
    sizes = {}
    for file, ds in slices:
        sizes.setdefault((int(ds.Rows), int(ds.Columns)), os.path.basename(file))
    if len(sizes) > 1:
        listed = "; ".join(f"{name}: {rows} x {columns}" for (rows, columns), name in sizes.items())
        raise DataError(path, f"DICOM slices of different sizes (rows x columns: {listed})")
    placed = [file for file, ds in slices if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds]
    if placed and len(placed) < len(slices):
        odd = next(file for file, _ in slices if file not in placed)
        raise DataError(odd, f"no ImagePositionPatient or ImageOrientationPatient, unlike {os.path.basename(placed[0])}"
                             " in the same folder: its place in the stack is unknown")
    if placed:
        orientations = [tuple(round(float(v), 4) + 0.0 for v in ds.ImageOrientationPatient) for _, ds in slices]
        common = max(orientations, key=orientations.count)  # the first of the most common
        for (file, _), orientation in zip(slices, orientations):
            if not np.allclose(orientation, common, atol=1e-3):
                raise DataError(file, f"ImageOrientationPatient {list(orientation)} differs from the rest of the "
                                      f"series {list(common)}: a slice of another orientation (a localizer?)")
        normal = np.cross(common[:3], common[3:])
        keys = [float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for _, ds in slices]
        what, tolerance = "position along the slice normal (mm)", 1e-3
    else:
        if any("InstanceNumber" not in ds or ds.InstanceNumber is None for _, ds in slices):
            raise DataError(path, "DICOM slices without ImagePositionPatient or InstanceNumber: their order is unknown")
        keys = [float(ds.InstanceNumber) for _, ds in slices]
        what, tolerance = "InstanceNumber", 0.5
    order = sorted(range(len(slices)), key=keys.__getitem__)
    for before, after in zip(order, order[1:]):
        if keys[after] - keys[before] < tolerance:
            raise DataError(slices[after][0], f"same {what} {keys[after]:g} as {os.path.basename(slices[before][0])}: "
                                              "duplicate slices, or two acquisitions in one series")
    gap = keys[order[1]] - keys[order[0]] if placed else None
    return [slices[i] for i in order], gap


def _dicom_pixels(file, ds):
    """One file's pixels as a viewer shows them: `(frames, rows, columns)` float32 grey values after the modality
    transform (rescale slope/intercept, or a modality LUT; Hounsfield units in CT), MONOCHROME1 inverted within its
    value range so that higher is brighter as in MONOCHROME2; or `(frames, rows, columns, 3)` RGB (YBR converted,
    palette colours looked up). No VOI window is applied: the model gets every modality value."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in DICOM_PHOTOMETRIC:
        raise DataError(file, f"unsupported PhotometricInterpretation {photometric!r} "
                              f"(read: {', '.join(DICOM_PHOTOMETRIC)})")
    _check_decoder(file, ds)
    try:
        pixels = ds.pixel_array  # YBR is converted to RGB, samples stored planar become channels last
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, ds)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001
        raise DataError(file, f"unreadable DICOM pixel data ({describe(error)})") from None
    grey = photometric.startswith("MONOCHROME")
    pixels = pixels.reshape((_frames(ds), int(ds.Rows), int(ds.Columns)) + (() if grey else (3,)))
    if not grey:
        return pixels
    if "PixelData" in ds:
        bits = int(ds.BitsStored)
        signed = ds.get("PixelRepresentation") == 1
        low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
    else:  # float pixel data: no stored range
        low, high = float(pixels.min()), float(pixels.max())
    if ds.get("ModalityLUTSequence"):
        ends = apply_modality_lut(np.arange(low, high + 1), ds)
        pixels = apply_modality_lut(pixels, ds).astype(np.float32)
        transforms = [(1.0, 0.0, float(ends.min()) + float(ends.max()))] * len(pixels)
    else:
        pixels = pixels.astype(np.float32)
        transforms = [(slope, intercept, (low + high) * slope + 2 * intercept)
                      for slope, intercept in (_rescale(ds, frame) for frame in range(len(pixels)))]
    for frame, (slope, intercept, total) in enumerate(transforms):
        if (slope, intercept) != (1.0, 0.0):
            pixels[frame] = pixels[frame] * slope + intercept
        if photometric == "MONOCHROME1":  # the lowest value is white: mirror the value range
            pixels[frame] = total - pixels[frame]
    return pixels


def _rescale(ds, frame):
    """`(slope, intercept)` of one frame: its functional group (enhanced multi-frame), the shared one, or the
    top-level Rescale Slope and Intercept."""
    groups = list(ds.get("PerFrameFunctionalGroupsSequence") or [])[frame:frame + 1]
    groups += list(ds.get("SharedFunctionalGroupsSequence") or [])[:1] + [ds]
    for group in groups:
        items = group.get("PixelValueTransformationSequence") if group is not ds else [ds]
        for item in list(items or [])[:1]:
            if item.get("RescaleSlope") is not None or item.get("RescaleIntercept") is not None:
                return float(item.get("RescaleSlope") or 1), float(item.get("RescaleIntercept") or 0)
    return 1.0, 0.0


def _check_decoder(file, ds):
    """Refuses compressed pixel data that no installed package decodes, naming the compression and the packages."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DataError(file, f"pixel data compressed as '{syntax.name}', which pydicom cannot decode") from None
    if not decoder.is_available:
        options = []
        for line in decoder.missing_dependencies:  # "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"
            needs = [re.split(r"[<>=]", need)[0].strip() for need in line.partition(" - requires ")[2].split(" and ")]
            needs = ["python-gdcm" if need == "gdcm" else need for need in needs if need and need != "numpy"]
            if needs:
                options.append("pip install " + " ".join(needs))
        options.sort(key=lambda option: "pylibjpeg" not in option)
        hint = options[0] + "".join(f" (or {option})" for option in options[1:]) if options else "see pydicom's docs"
        raise DataError(file, f"pixel data compressed as '{syntax.name}', and no decoder for it is installed: {hint}")


def looks_like_dicom(file):
    """True where `file` has the DICOM preamble's `DICM` mark (a DICOM file named without `.dcm`)."""
    with open(file, "rb") as f:
        header = f.read(132)
    return header[128:132] == b"DICM"

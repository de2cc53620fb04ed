"""Formats read as a viewer shows them (issue 27, section 3): each case writes a tiny file whose correct pixels
are known, and checks either those exact pixels or the one-line refusal naming the file."""

import gzip
import os
import re
import struct
import zlib

import numpy as np
import pytest

from mims_tf.data import DataError, read_volume


def _error(path, reason):
    return pytest.raises(DataError, match="^" + re.escape(f"{path}: ") + ".*" + re.escape(reason))


# --- DICOM ----------------------------------------------------------------------------------------


def _dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, syntax=None, **attributes):
    """A DICOM file of `pixels` (`(rows, columns)`, `(frames, rows, columns)` with NumberOfFrames, or colour
    `(rows, columns, 3)`) and the given attributes; pixel data stored as given (`PixelData` bytes may be passed)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SeriesInstanceUID = "1.2.3"
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    frames = attributes.get("NumberOfFrames", 1)
    ds.Rows, ds.Columns = pixels.shape[1:3] if frames > 1 else pixels.shape[:2]
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored = bits, bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    if colour:
        ds.PlanarConfiguration = 0
    for name, value in attributes.items():
        setattr(ds, name, value)
    if "PixelData" not in attributes:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _slice(folder, name, z, orientation=(1, 0, 0, 0, 1, 0), value=None, **attributes):
    os.makedirs(folder, exist_ok=True)
    position = attributes.pop("position", [0, 0, z])
    pixels = np.full((3, 4), int(value if value is not None else z * 10), np.uint16)
    return _dicom(os.path.join(folder, name), pixels, ImageOrientationPatient=list(orientation),
                  ImagePositionPatient=list(position), PixelSpacing=[0.5, 0.5], **attributes)


def test_dicom_monochrome1_is_inverted_within_its_stored_range(tmp_path):
    stored = np.array([[0, 100], [2000, 4095]], np.uint16)
    grey2 = read_volume(_dicom(tmp_path / "m2.dcm", stored, bits_stored=12)).array
    grey1 = read_volume(_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", bits_stored=12)).array
    np.testing.assert_array_equal(grey2[0], stored)
    np.testing.assert_array_equal(grey1[0], 4095 - stored)  # 0 (white in MONOCHROME1) is the brightest
    # after rescale: values 2 v - 1000 in [-1000, 7190]; inverted within that range
    rescaled = _dicom(tmp_path / "r1.dcm", stored, "MONOCHROME1", bits_stored=12, RescaleSlope=2,
                      RescaleIntercept=-1000)
    np.testing.assert_array_equal(read_volume(rescaled).array[0], 7190 - 2 * stored.astype(np.float32))


def test_dicom_signed_ct_in_hounsfield_units(tmp_path):
    stored = np.array([[-2000, 0], [24, 3000]], np.int16)
    path = _dicom(tmp_path / "ct.dcm", stored, RescaleSlope=1, RescaleIntercept=-1024)
    np.testing.assert_array_equal(read_volume(path).array[0], stored.astype(np.float32) - 1024)


def test_dicom_series_sorted_along_the_slice_normal_of_any_orientation(tmp_path):
    sagittal = (0, 1, 0, 0, 0, -1)  # normal (-1, 0, 0): the stack runs from right (+x) to left
    for name, x in [("a.dcm", 1.0), ("b.dcm", 3.0), ("c.dcm", 2.0)]:
        _slice(tmp_path / "s", name, 0, sagittal, value=x, position=[x, 0, 0])
    volume = read_volume(tmp_path / "s")
    assert list(volume.array[:, 0, 0]) == [3, 2, 1]
    assert volume.spacing == pytest.approx((1.0, 0.5, 0.5))


def test_dicom_slice_of_another_orientation_is_refused_naming_it(tmp_path):
    for i in range(3):
        _slice(tmp_path / "s", f"{i}.dcm", i)
    odd = _slice(tmp_path / "s", "3.dcm", 0, orientation=(0, 1, 0, 0, 0, -1))
    with _error(odd, "ImageOrientationPatient [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] differs from the rest of the series"):
        read_volume(tmp_path / "s")


def test_dicom_duplicate_positions_are_refused(tmp_path):
    _slice(tmp_path / "s", "a.dcm", 1.0)
    _slice(tmp_path / "s", "b.dcm", 2.0)
    second = _slice(tmp_path / "s", "c.dcm", 2.0)
    with _error(second, "same position along the slice normal (mm) 2 as b.dcm: duplicate slices"):
        read_volume(tmp_path / "s")


def test_dicom_slices_of_different_sizes_named(tmp_path):
    _slice(tmp_path / "s", "a.dcm", 1.0)
    _dicom(tmp_path / "s" / "b.dcm", np.zeros((5, 4), np.uint16), ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
           ImagePositionPatient=[0, 0, 2])
    with _error(tmp_path / "s", "DICOM slices of different sizes (rows x columns: a.dcm: 3 x 4; b.dcm: 5 x 4)"):
        read_volume(tmp_path / "s")


def test_dicom_without_positions_by_instance_number_else_refused(tmp_path):
    for name, number in [("a.dcm", 3), ("b.dcm", 1), ("c.dcm", 2)]:
        os.makedirs(tmp_path / "s", exist_ok=True)
        _dicom(tmp_path / "s" / name, np.full((2, 2), number, np.uint16), InstanceNumber=number)
    assert list(read_volume(tmp_path / "s").array[:, 0, 0]) == [1, 2, 3]
    os.makedirs(tmp_path / "n")
    for name in ("a.dcm", "b.dcm"):
        _dicom(tmp_path / "n" / name, np.zeros((2, 2), np.uint16))
    with _error(tmp_path / "n", "without ImagePositionPatient or InstanceNumber: their order is unknown"):
        read_volume(tmp_path / "n")
    _slice(tmp_path / "m", "a.dcm", 1.0)
    lost = _dicom(tmp_path / "m" / "b.dcm", np.zeros((3, 4), np.uint16))
    with _error(lost, "no ImagePositionPatient or ImageOrientationPatient, unlike a.dcm"):
        read_volume(tmp_path / "m")


def test_dicom_multi_frame_with_per_frame_rescale(tmp_path):
    from pydicom.dataset import Dataset

    def group(slope, intercept):
        item, transform = Dataset(), Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        item.PixelValueTransformationSequence = [transform]
        return item

    frames = np.arange(3 * 2 * 2, dtype=np.uint16).reshape(3, 2, 2)
    path = _dicom(tmp_path / "mf.dcm", frames, NumberOfFrames=3,
                  PerFrameFunctionalGroupsSequence=[group(1, 0), group(2, 0), group(1, -5)])
    expected = frames.astype(np.float32) * np.array([1, 2, 1])[:, None, None] + np.array([0, 0, -5])[:, None, None]
    np.testing.assert_array_equal(read_volume(path).array, expected)
    shared = _dicom(tmp_path / "shared.dcm", frames, NumberOfFrames=3, SharedFunctionalGroupsSequence=[group(3, 1)])
    np.testing.assert_array_equal(read_volume(shared).array, frames * 3.0 + 1)
    os.makedirs(tmp_path / "s")
    os.replace(path, tmp_path / "s" / "mf.dcm")
    os.replace(shared, tmp_path / "s" / "shared.dcm")
    with pytest.raises(DataError, match=r"multi-frame DICOM file \(3 frames\) in a folder of 2 files"):
        read_volume(tmp_path / "s")


def test_dicom_colour_rgb_ybr_and_palette(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    np.testing.assert_array_equal(read_volume(_dicom(tmp_path / "rgb.dcm", rgb, "RGB")).array[0], rgb)
    planar = np.moveaxis(rgb, -1, 0).copy()  # PlanarConfiguration 1: R plane, G plane, B plane
    path = _dicom(tmp_path / "planar.dcm", rgb, "RGB", PlanarConfiguration=1, PixelData=planar.tobytes())
    np.testing.assert_array_equal(read_volume(path).array[0], rgb)
    ybr = np.array([[[76, 85, 255], [100, 128, 128]]], np.uint8)  # red, grey 100
    colours = read_volume(_dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL")).array[0].astype(int)
    np.testing.assert_allclose(colours, [[[255, 0, 0], [100, 100, 100]]], atol=2)
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    lut = {"Red": [65535, 0, 0], "Green": [0, 65535, 0], "Blue": [0, 0, 32768]}
    tables = {f"{colour}PaletteColorLookupTableData": np.array(values, "<u2").tobytes()
              for colour, values in lut.items()}
    descriptors = {f"{colour}PaletteColorLookupTableDescriptor": [3, 0, 16] for colour in lut}
    path = _dicom(tmp_path / "palette.dcm", indices, "PALETTE COLOR", **tables, **descriptors)
    expected = np.array([[[65535, 0, 0], [0, 65535, 0]], [[0, 0, 32768], [0, 65535, 0]]])
    np.testing.assert_array_equal(read_volume(path).array[0], expected)


def test_dicom_unsupported_photometric_is_refused(tmp_path):
    path = _dicom(tmp_path / "hsv.dcm", np.zeros((2, 2, 3), np.uint8), "HSV")
    with _error(path, "unsupported PhotometricInterpretation 'HSV'"):
        read_volume(path)


def test_dicom_compressed_without_a_decoder_names_the_syntax_and_packages(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = _dicom(tmp_path / "jls.dcm", np.zeros((2, 2), np.uint16), syntax=JPEGLSLossless,
                  PixelData=encapsulate([b"\xff\xd8\xff\xd9"]))
    with _error(path, "pixel data compressed as 'JPEG-LS Lossless Image Compression', and no decoder for it is "
                      "installed: pip install pylibjpeg pylibjpeg-libjpeg (or pip install python-gdcm)"):
        read_volume(path)


def test_dicom_size_limit_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    path = _dicom(tmp_path / "big.dcm", np.zeros((40, 40), np.uint16))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1200 bytes
    with _error(path, "DICOM file declares 1600 samples (3200 bytes), over the limit of 1200 bytes"):
        read_volume(path)


def test_dicomdir_in_a_series_folder_is_skipped(tmp_path):
    _slice(tmp_path / "s", "a.dcm", 1.0)
    _slice(tmp_path / "s", "b.dcm", 2.0)
    (tmp_path / "s" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 20)
    assert read_volume(tmp_path / "s").array.shape == (2, 3, 4)


# --- NIfTI ----------------------------------------------------------------------------------------


def test_nifti_scale_slope_and_intercept_applied(tmp_path):
    import nibabel

    stored = np.arange(8, dtype=np.int16).reshape(2, 2, 2)
    image = nibabel.Nifti1Image(stored, np.eye(4))
    image.header.set_slope_inter(2.0, -10.0)
    nibabel.save(image, tmp_path / "s.nii.gz")
    volume = read_volume(tmp_path / "s.nii.gz").array
    expected = np.flip(np.transpose(stored * 2.0 - 10, (2, 1, 0)), axis=1)
    np.testing.assert_array_equal(volume, expected)


def test_nifti_4d(tmp_path):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.zeros((2, 3, 4, 3), np.float32), np.eye(4)), tmp_path / "t.nii")
    with _error(tmp_path / "t.nii", "wrong dimensions (2, 3, 4, 3): expected a 3D NIfTI volume (a 4D series of 3"):
        read_volume(tmp_path / "t.nii")
    nibabel.save(nibabel.Nifti1Image(np.ones((2, 3, 4, 1), np.float32), np.eye(4)), tmp_path / "one.nii")
    assert read_volume(tmp_path / "one.nii").array.shape == (4, 3, 2)


def test_nifti_gz_declaring_4_gib_refused_before_loading(tmp_path):
    import nibabel

    header = nibabel.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((1024, 1024, 1024))  # 4 GiB of float32
    raw = header.binaryblock + b"\0" * 4 + np.random.default_rng(0).bytes(4_200_000)  # incompressible: 4.2 MB
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    assert os.path.getsize(path) * 1032 > 4 * 2**30  # the file could hold it deflated: the limit refuses it
    with _error(path, "header declares (1024, 1024, 1024) of float32 (4294967296 bytes), over the limit of"):
        read_volume(path)


# --- TIFF -----------------------------------------------------------------------------------------


def test_truncated_multi_page_tiff_is_refused(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "full.tif", np.arange(5 * 64 * 64, dtype=np.uint16).reshape(5, 64, 64))
    data = (tmp_path / "full.tif").read_bytes()
    for name, end in [("half.tif", len(data) // 2), ("last.tif", len(data) - 5 * 64 * 64 * 2 + 100)]:
        (tmp_path / name).write_bytes(data[:end])
        with _error(tmp_path / name, "unreadable or corrupt file (truncated"):
            read_volume(tmp_path / name)


def test_tiff_miniswhite_palette_and_alpha(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "w.tif", np.array([[0, 10, 255]], np.uint8), photometric="miniswhite")
    np.testing.assert_array_equal(read_volume(tmp_path / "w.tif").array[0], [[255, 245, 0]])
    colormap = np.zeros((3, 256), np.uint16)
    colormap[0, 1], colormap[2, 2] = 65535, 4096
    tifffile.imwrite(tmp_path / "p.tif", np.array([[0, 1, 2]], np.uint8), photometric="palette", colormap=colormap)
    np.testing.assert_array_equal(read_volume(tmp_path / "p.tif").array[0], [[[0, 0, 0], [65535, 0, 0], [0, 0, 4096]]])
    rgba = np.full((2, 3, 4), 255, np.uint8)
    rgba[..., 0] = 7
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_volume(tmp_path / "rgba.tif").array[0], rgba[..., :3])
    rgba[0, 0, 3] = 0
    tifffile.imwrite(tmp_path / "clear.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    with _error(tmp_path / "clear.tif", "1 of 6 pixels are transparent"):
        read_volume(tmp_path / "clear.tif")
    tifffile.imwrite(tmp_path / "cmyk.tif", np.zeros((2, 3, 4), np.uint8), photometric="separated")
    with _error(tmp_path / "cmyk.tif", "CMYK (separated) TIFF"):
        read_volume(tmp_path / "cmyk.tif")


def test_tiff_compression_without_a_decoder(tmp_path):
    import tifffile

    try:
        tifffile.TIFF.DECOMPRESSORS[tifffile.COMPRESSION.LZW]
        pytest.skip("imagecodecs is installed here")
    except KeyError:
        pass
    # an LZW page written by hand: tifffile cannot encode LZW without imagecodecs either
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((2, 2), np.uint8))
    data = bytearray((tmp_path / "plain.tif").read_bytes())
    entries = struct.unpack_from("<H", data, struct.unpack_from("<I", data, 4)[0])[0]
    start = struct.unpack_from("<I", data, 4)[0] + 2
    for i in range(entries):
        tag = struct.unpack_from("<H", data, start + 12 * i)[0]
        if tag == 259:  # Compression
            struct.pack_into("<H", data, start + 12 * i + 8, 5)
    (tmp_path / "lzw.tif").write_bytes(bytes(data))
    with _error(tmp_path / "lzw.tif", "page 1 is compressed with LZW, and no decoder for it is installed: "
                                      "pip install imagecodecs"):
        read_volume(tmp_path / "lzw.tif")


# --- PNG, JPEG, BMP (Pillow) -----------------------------------------------------------------------


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_animated_png_is_refused(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((4, 4), value, np.uint8)) for value in (1, 2, 3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with _error(tmp_path / "anim.png", "animated image with 3 frames (PNG)"):
        read_volume(tmp_path / "anim.png")
    frames[0].save(tmp_path / "gif.png", format="GIF", save_all=True, append_images=frames[1:])  # a GIF named .png
    with _error(tmp_path / "gif.png", "animated image with 3 frames (GIF)"):
        read_volume(tmp_path / "gif.png")


def test_png_16_bit_grey_kept_and_16_bit_colour_refused(tmp_path):
    from PIL import Image

    grey = np.array([[0, 300, 65535]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    volume = read_volume(tmp_path / "g16.png").array
    assert volume.dtype == np.uint16
    np.testing.assert_array_equal(volume[0], grey)
    raw = b"\0" + np.array([[[0, 256, 65535]]], ">u2").tobytes()
    (tmp_path / "rgb16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 16, 2,
                                         0, 0, 0)) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    with _error(tmp_path / "rgb16.png", "16-bit RGB PNG, which Pillow reads as 8 bits"):
        read_volume(tmp_path / "rgb16.png")


def test_palette_png_as_its_colours_and_transparency_refused(tmp_path):
    from PIL import Image

    image = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_volume(tmp_path / "p.png").array[0], [[[255, 0, 0], [0, 0, 255]]])
    image.save(tmp_path / "pt.png", transparency=0)
    with _error(tmp_path / "pt.png", "1 of 2 pixels are transparent"):
        read_volume(tmp_path / "pt.png")


def test_exif_orientation_applied_as_viewers_do(tmp_path):
    from PIL import Image

    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    np.testing.assert_array_equal(read_volume(tmp_path / "turned.png").array[0], np.rot90(pixels, -1))


def test_alpha_dropped_when_opaque_refused_when_transparent(tmp_path):
    from PIL import Image

    la = np.array([[[10, 255], [20, 255]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_volume(tmp_path / "la.png").array[0], [[10, 20]])
    rgba = np.array([[[1, 2, 3, 255], [4, 5, 6, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    with _error(tmp_path / "rgba.png", "1 of 2 pixels are transparent"):
        read_volume(tmp_path / "rgba.png")
    rgba[0, 1, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_volume(tmp_path / "opaque.png").array[0], rgba[..., :3])


def test_cmyk_jpeg_and_bilevel_png(tmp_path):
    from PIL import Image

    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    red = read_volume(tmp_path / "cmyk.jpg").array
    assert red.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(red[0, 4, 4].astype(int), [255, 0, 0], atol=3)
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "bw.png")
    bilevel = read_volume(tmp_path / "bw.png").array
    assert bilevel.dtype == np.uint8 and bilevel.tolist() == [[[0, 255]]]

import os
import re

import numpy as np
import pytest

from mims_tf.data import DataError, read_volume
from mims_tf.data.oct import CIRRUS_LAYOUTS
from mims_tf.data.readers import READERS, SUPPORTED_SUFFIXES, readable_suffix, supported_suffixes
from mims_tf.runs.explain import item_name
from tests.conftest import SHARED

DATA = os.path.join(SHARED, "data")
OCT = os.path.join(DATA, "oct-fixtures")
KATHER_TILE = os.path.join(DATA, "kather-crc-msi", "MSS_JPEG")


def _error(path, reason):
    return pytest.raises(DataError, match=re.escape(f"{path}: ") + ".*" + re.escape(reason))


# --- real files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Linescan_1.vol", "Peripapillary_1.vol", "onh.vol"])
def test_heidelberg_vol_fixtures_including_circular_scans(name):
    volume = read_volume(os.path.join(OCT, name))
    assert volume.array.shape == (1, 496, 768) and volume.array.dtype == np.uint8
    assert volume.array.std() > 10  # a real B-scan, not a blank
    assert volume.meta["scan_pattern"] == (1 if name.startswith("Linescan") else 2)
    assert volume.spacing[1] == pytest.approx(0.00387, abs=1e-4)  # mm per pixel in depth


def test_heidelberg_e2e_fixture():
    volume = read_volume(os.path.join(OCT, "e2e_minimized.E2E"))
    assert volume.array.shape == (1, 496, 512) and volume.array.dtype == np.uint8
    assert volume.array.std() > 10


def test_topcon_fda_and_fds_fixtures():
    fda = read_volume(os.path.join(OCT, "fda_minimized.fda"))
    assert fda.array.shape == (1, 650, 512) and fda.array.std() > 10
    fds = read_volume(os.path.join(OCT, "fds_minimized.fds"))
    assert sorted(fds.array.shape) == [2, 3, 4]  # "cut to 2x3x4 voxels"


@pytest.mark.slow
def test_cirrus_img_written_to_spec(tmp_path):
    bscans, ascans, depth = CIRRUS_LAYOUTS["200x200"]
    s, a, d = np.meshgrid(np.arange(bscans), np.arange(ascans), np.arange(depth), indexing="ij")
    stored = ((s * 7 + a * 3 + d) % 251).astype(np.uint8)  # file order: B-scan, A-scan, depth
    path = tmp_path / "P123_Macular Cube 200x200_1-2-2020_10-11-12_OD_sn1_cube_z.img"
    stored.tofile(path)
    volume = read_volume(path).array
    assert volume.shape == (bscans, depth, ascans)
    np.testing.assert_array_equal(volume[5], stored[5].T)
    # the layout also follows from the size alone
    plain = tmp_path / "scan.img"
    stored.tofile(plain)
    assert read_volume(plain).array.shape == (bscans, depth, ascans)
    truncated = tmp_path / "cut_200x200.img"
    stored.ravel()[:-1000].tofile(truncated)
    with _error(truncated, "truncated or wrong layout"):
        read_volume(truncated)
    odd = tmp_path / "odd.img"
    np.zeros(1234, np.uint8).tofile(odd)
    with _error(odd, "unknown Cirrus layout"):
        read_volume(odd)


@pytest.mark.parametrize(
    "folder, file, key, shape",
    [
        ("adrenalmnist3d", "adrenalmnist3d.npz", "train_images", (28, 28, 28)),
        ("adrenalmnist3d", "adrenalmnist3d_64.npz", "test_images", (64, 64, 64)),
        ("breastmnist", "breastmnist.npz", "val_images", (1, 28, 28)),
        ("pneumoniamnist", "pneumoniamnist.npz", "test_images", (1, 28, 28)),
    ],
)
def test_medmnist_items(folder, file, key, shape):
    path = os.path.join(DATA, folder, file)
    volume = read_volume(f"{path}#{key}/3")
    assert volume.array.shape == shape


def test_kather_tile_is_one_rgb_instance():
    tile = os.path.join(KATHER_TILE, sorted(os.listdir(KATHER_TILE))[0])
    assert read_volume(tile).array.shape == (1, 224, 224, 3)


# --- files written here to each format's spec -----------------------------------------------------


def test_nifti_axial_slices_anterior_up(tmp_path):
    import nibabel

    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    for name in ("v.nii", "v.nii.gz"):
        nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / name)
        volume = read_volume(tmp_path / name)
        assert volume.array.shape == (7, 6, 5)
        assert volume.array[2, 6 - 1 - 4, 3] == pytest.approx(data[3, 4, 2])
        assert volume.spacing == pytest.approx((2.5, 0.9, 0.8))


def _write_dicom_series(folder, positions, series_uid="1.2.3", shape=(4, 5)):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    for i, z in enumerate(positions):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SeriesInstanceUID = series_uid
        ds.Rows, ds.Columns = shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, z]
        ds.PixelSpacing = [0.5, 0.6]
        ds.RescaleSlope, ds.RescaleIntercept = 2, -100
        ds.PixelData = np.full(shape, int(z * 10), dtype=np.uint16).tobytes()
        ds.save_as(os.path.join(folder, f"slice_{i:02d}.dcm"), enforce_file_format=True)


def test_dicom_series_sorted_by_position_not_name(tmp_path):
    positions = [3.0, 1.0, 4.0, 2.0]  # file names slice_00..03 are in another order
    _write_dicom_series(tmp_path / "series", positions)
    volume = read_volume(tmp_path / "series")
    assert volume.array.shape == (4, 4, 5)
    np.testing.assert_allclose(volume.array[:, 0, 0], [10 * 2 - 100, 20 * 2 - 100, 30 * 2 - 100, 40 * 2 - 100])
    assert volume.spacing == pytest.approx((1.0, 0.5, 0.6))


def test_dicom_folder_with_two_series_is_rejected(tmp_path):
    _write_dicom_series(tmp_path / "mixed", [1.0, 2.0], series_uid="1.2.3")
    _write_dicom_series(tmp_path / "other", [3.0], series_uid="9.9.9")
    os.replace(tmp_path / "other" / "slice_00.dcm", tmp_path / "mixed" / "slice_99.dcm")
    with _error(tmp_path / "mixed", "holds 2 DICOM series"):
        read_volume(tmp_path / "mixed")


def test_tiff_pages_and_single_rgb_page(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "stack.tif", np.arange(5 * 8 * 9, dtype=np.uint16).reshape(5, 8, 9))
    assert read_volume(tmp_path / "stack.tif").array.shape == (5, 8, 9)
    tifffile.imwrite(tmp_path / "rgb.tiff", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    assert read_volume(tmp_path / "rgb.tiff").array.shape == (1, 8, 9, 3)


def test_png_stack_in_natural_name_order(tmp_path):
    from PIL import Image

    folder = tmp_path / "stack"
    folder.mkdir()
    for value in (1, 2, 10):
        Image.fromarray(np.full((6, 7), value, np.uint8)).save(folder / f"slice{value}.png")
    volume = read_volume(folder)
    assert volume.array.shape == (3, 6, 7)
    assert list(volume.array[:, 0, 0]) == [1, 2, 10]


@pytest.mark.parametrize("shape, expected", [((6, 7), (1, 6, 7)), ((3, 6, 7), (3, 6, 7)), ((3, 6, 7, 3), (3, 6, 7, 3))])
def test_npy(tmp_path, shape, expected):
    np.save(tmp_path / "a.npy", np.ones(shape, np.float32))
    assert read_volume(tmp_path / "a.npy").array.shape == expected


# --- bad input: one line naming the file and the cause ----------------------------------------


def test_missing_file(tmp_path):
    with _error(tmp_path / "none.nii.gz", "file not found"):
        read_volume(tmp_path / "none.nii.gz")


@pytest.mark.parametrize("name", ["bad.nii.gz", "bad.png", "bad.npy", "bad.tif", "bad.dcm", "bad.vol", "bad.fda"])
def test_corrupt_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with _error(path, "unreadable"):
        read_volume(path)


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_every_suffix_of_the_readers_table_is_read_and_named_everywhere(tmp_path, suffix):
    path = tmp_path / f"scan{suffix.upper()}"  # any case
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(DataError) as error:  # garbage: a reader's error, never "unknown file type"
        read_volume(path)
    assert "unknown file type" not in str(error.value)
    assert readable_suffix(path) == suffix and (suffix in supported_suffixes() or suffix == ".npz")
    assert item_name(path) == "scan"  # `mims explain`'s output folder drops every readable suffix


def test_the_readers_table_lists_each_suffix_once():
    listed = [suffix for suffixes, _ in READERS for suffix in suffixes]
    assert len(listed) == len(set(listed)) == len(SUPPORTED_SUFFIXES)
    assert {".npz", ".npy", ".nii.gz", ".dcm", ".tiff", ".bmp", ".e2e", ".fds", ".img"} <= set(SUPPORTED_SUFFIXES)
    assert readable_suffix("v.nii.gz") == ".nii.gz" and readable_suffix("notes.txt") == ""
    assert item_name("set.npz#test_images/2") == "set_test_images_2"


def test_truncated_jpeg_and_png(tmp_path):
    tile = os.path.join(KATHER_TILE, sorted(os.listdir(KATHER_TILE))[0])
    data = open(tile, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with _error(tmp_path / "cut.jpg", "unreadable or corrupt file"):
        read_volume(tmp_path / "cut.jpg")
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with _error(tmp_path / "cut.png", "unreadable or corrupt file"):
        read_volume(tmp_path / "cut.png")


def test_truncated_e2e(tmp_path):
    data = open(os.path.join(OCT, "e2e_minimized.E2E"), "rb").read()
    (tmp_path / "cut.E2E").write_bytes(data[: len(data) // 2])
    with _error(tmp_path / "cut.E2E", "truncated B-scan"):
        read_volume(tmp_path / "cut.E2E")


def test_wrong_dimensions_empty_and_nan(tmp_path):
    np.save(tmp_path / "five.npy", np.zeros((2, 2, 2, 2, 2), np.float32))
    with _error(tmp_path / "five.npy", "wrong dimensions (2, 2, 2, 2, 2)"):
        read_volume(tmp_path / "five.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4), np.float32))
    with _error(tmp_path / "empty.npy", "empty volume"):
        read_volume(tmp_path / "empty.npy")
    nan = np.zeros((2, 4, 4), np.float32)
    nan[0, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with _error(tmp_path / "nan.npy", "contains NaN or Inf values (1 of 32)"):
        read_volume(tmp_path / "nan.npy")
    channels = tmp_path / "channels.npy"
    np.save(channels, np.zeros((2, 4, 4, 7), np.float32))
    with _error(channels, "wrong dimensions"):
        read_volume(channels)


def test_unknown_suffix_and_npz_items(tmp_path):
    (tmp_path / "a.xyz").write_bytes(b"x")
    with _error(tmp_path / "a.xyz", "unknown file type"):
        read_volume(tmp_path / "a.xyz")
    path = os.path.join(DATA, "breastmnist", "breastmnist.npz")
    with _error(path, "name an array item"):
        read_volume(path)
    with _error(path, "no array 'nope'"):
        read_volume(f"{path}#nope/0")
    with _error(path, "index 9999 out of range"):
        read_volume(f"{path}#val_images/9999")


def test_stack_of_different_sizes_and_empty_folder(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    with _error(tmp_path / "empty", "empty folder"):
        read_volume(tmp_path / "empty")
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(folder / "b.png")
    with _error(folder, "images of different sizes"):
        read_volume(folder)


# --- module structure -------------------------------------------------------------------------


def test_readers_and_oct_do_not_import_each_other_in_a_cycle():
    import ast
    import subprocess
    import sys

    import mims_tf.data

    def imported(name):
        tree = ast.parse(open(os.path.join(os.path.dirname(mims_tf.data.__file__), f"{name}.py")).read())
        found = set()
        for node in ast.walk(tree):  # module level and inside functions
            if isinstance(node, ast.ImportFrom):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        return found

    assert "mims_tf.data.readers" not in imported("oct")
    assert "mims_tf.data.readers" not in imported("dicom") and "mims_tf.data.dicom" in imported("readers")
    assert not {"mims_tf.data.readers", "mims_tf.data.oct"} & imported("volume")
    assert "mims_tf.data.oct" in imported("readers")  # one direction only
    for first, second in [("readers", "oct"), ("oct", "readers")]:
        code = f"import mims_tf.data.{first}, mims_tf.data.{second}; from mims_tf.data import Volume; " \
               "from mims_tf.data.readers import Volume as V; from mims_tf.data.oct import Volume as W; " \
               "assert Volume is V is W"
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))

import os
import re

import numpy as np
import pytest

from mims_tf.data import BagSource, DataError, from_medmnist, from_rows, make_dataset, normalize_volume
from mims_tf.data.synthetic import write_dataset
from tests.conftest import SHARED, requires_tensorflow

pytestmark = requires_tensorflow()
ADRENAL = os.path.join(SHARED, "data", "adrenalmnist3d", "adrenalmnist3d.npz")


@pytest.fixture(scope="module")
def adrenal():
    return from_medmnist(ADRENAL)


def _volumes(tmp_path, counts, value=None):
    rows = []
    for i, count in enumerate(counts):
        array = np.arange(count, dtype=np.float32)[:, None, None] * np.ones((count, 6, 5), np.float32)
        np.save(tmp_path / f"v{i}.npy", array if value is None else np.full((count, 6, 5), value, np.float32))
        rows.append({"path": str(tmp_path / f"v{i}.npy"), "label": i % 2, "split": "train"})
    return from_rows(rows)


def test_training_batches_shapes_range_and_labels(adrenal):
    source = BagSource(adrenal, "val", progress=False)
    dataset = make_dataset(source, training=True, image_size=(32, 32), instances=8, batch_size=4, seed=0)
    x, y = next(iter(dataset))
    assert x.shape == (4, 8, 32, 32, 3) and x.dtype.name == "float32" and y.dtype.name == "int32"
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 255.0
    assert sum(len(y) for _, y in dataset) == 98  # one epoch is every bag once


def test_same_seed_same_batches_other_seed_other_batches(adrenal):
    source = BagSource(adrenal, "val", progress=False)

    def first_epoch(seed):
        data = make_dataset(source, True, image_size=(16, 16), instances=4, batch_size=8, seed=seed)
        return np.concatenate([x.numpy().ravel() for x, _ in data])

    assert np.array_equal(first_epoch(1), first_epoch(1))
    assert not np.array_equal(first_epoch(1), first_epoch(2))


def test_epochs_differ_and_paper_sampling_of_central_slices(tmp_path):
    manifest = _volumes(tmp_path, [40])
    source = BagSource(manifest, central=30, normalize="none", progress=False)
    dataset = make_dataset(source, True, image_size=(6, 5), instances=(12, 18), augment=False, seed=0)
    seen_counts, seen_slices = set(), set()
    for _ in range(20):
        (x, _), = list(dataset)
        slices = x.numpy()[0, :, 0, 0, 0]
        seen_counts.add(len(slices))
        seen_slices.update(slices.tolist())
        assert np.all(np.diff(slices) > 0)  # distinct, in volume order
    assert seen_counts <= set(range(12, 19)) and len(seen_counts) > 2
    assert min(seen_slices) >= 5 and max(seen_slices) <= 34  # the 30 central of 40


def test_evaluation_yields_every_bag_whole_in_order(tmp_path):
    manifest = _volumes(tmp_path, [3, 5, 2])
    source = BagSource(manifest, normalize="none", progress=False)
    batches = list(make_dataset(source, False, image_size=(6, 5)))
    assert [b[0].shape[1] for b in batches] == [3, 5, 2]
    assert [int(b[1][0]) for b in batches] == [0, 1, 0]
    with pytest.raises(ValueError, match=re.escape("use batch_size=1. Received: batch_size=2")):
        make_dataset(source, False, batch_size=2)
    with pytest.raises(ValueError, match=re.escape("fewer than 4 instances, so bags sampled 2 to 4 a step cannot be "
                                                   "batched: use batch_size=1 or replacement=True")):
        make_dataset(source, True, instances=(2, 4), batch_size=2)


def test_a_range_of_instances_is_drawn_once_per_step_for_the_bags_of_a_batch(tmp_path):
    """The paper's 12 to 18 slices with batches of several bags: one count a step, so the bags batch; the counts
    vary over steps, every bag keeps distinct slices in volume order, and a resumed stream gives the same steps."""
    source = BagSource(_volumes(tmp_path, [20] * 9), central=18, normalize="none", progress=False)

    def stream(start_step=0):
        return make_dataset(source, True, image_size=(6, 5), instances=(12, 18), batch_size=4, augment=False,
                            seed=1, repeat=True, start_step=start_step)

    steps = [x.numpy()[:, :, 0, 0, 0] for x, _ in stream().take(12)]
    assert {s.shape[0] for s in steps} == {4} and len({s.shape[1] for s in steps}) > 2
    assert all(12 <= s.shape[1] <= 18 and np.all(np.diff(s, axis=1) > 0) for s in steps)
    for first, again in zip(steps[5:], stream(start_step=5).take(7)):
        np.testing.assert_array_equal(first, again[0].numpy()[:, :, 0, 0, 0])
    # without repeat (an epoch per iteration, the last batch short) and for one reader's shard alike
    epochs = make_dataset(source, True, image_size=(6, 5), instances=(12, 18), batch_size=4, augment=False, seed=1)
    shard = make_dataset(source, True, image_size=(6, 5), instances=(12, 18), batch_size=2, augment=False, seed=1,
                         shard=(1, 3))
    for dataset, sizes in ((epochs, [4, 4, 1]), (shard, [2, 1])):
        for _ in range(2):
            batches = [x.numpy()[:, :, 0, 0, 0] for x, _ in dataset]
            assert [b.shape[0] for b in batches] == sizes and all(12 <= b.shape[1] <= 18 for b in batches)


def test_evaluation_can_sample_a_fixed_number_of_instances_per_bag(tmp_path):
    source = BagSource(_volumes(tmp_path, [3, 9, 2]), normalize="none", progress=False)

    def slices(seed):
        data = make_dataset(source, False, image_size=(6, 5), instances=4, batch_size=3, seed=seed, replacement=True)
        (x, y), = list(data)  # equal sizes now: the bags batch together, still in order
        assert x.shape[:2] == (3, 4) and y.numpy().tolist() == [0, 1, 0]
        return x.numpy()[:, :, 0, 0, 0]

    first = slices(0)
    assert np.array_equal(first, slices(0))  # sampled once per (seed, bag): the same every call
    assert not np.array_equal(first, slices(1))
    assert set(first[1]) <= set(range(9)) and len(set(first[1])) == 4  # distinct where the bag is large enough
    assert set(first[2]) <= {0.0, 1.0}  # with replacement where it is not
    with pytest.raises(ValueError, match=re.escape("an int or None. Received: instances=(2, 3)")):
        make_dataset(source, False, instances=(2, 3))
    # By default a bag smaller than `instances` keeps its own instances, each once.
    sizes = [x.shape[1] for x, _ in make_dataset(source, False, image_size=(6, 5), instances=4)]
    assert sizes == [3, 4, 2]
    with pytest.raises(ValueError, match="use batch_size=1 or replacement=True"):
        make_dataset(source, False, instances=4, batch_size=3)


def test_training_never_copies_an_instance_and_pools_as_evaluation_does(tmp_path):
    source = BagSource(_volumes(tmp_path, [1, 1, 5, 2, 6, 1]), normalize="none", progress=False)
    data = make_dataset(source, True, image_size=(6, 5), instances=4, batch_size=2, augment=False, seed=3)
    seen = []
    for x, y in data:
        values = x.numpy()[:, :, 0, 0, 0]
        for bag in values:
            assert len(set(bag.tolist())) == len(bag)  # distinct instances: no copies
        seen += [x.shape[1]] * x.shape[0]
    assert sorted(seen) == [1, 1, 1, 2, 4, 4]  # each bag once: min(4, its size) instances
    # A 2D image (a bag of one) stays one instance: the same candidates as at test.
    (tmp_path / "single").mkdir()
    single = BagSource(_volumes(tmp_path / "single", [1, 1, 1, 1]), normalize="none", progress=False)
    x, _ = next(iter(make_dataset(single, True, image_size=(6, 5), instances=8, batch_size=4, augment=False)))
    assert x.shape[:2] == (4, 1)
    x, _ = next(iter(make_dataset(single, True, image_size=(6, 5), instances=8, batch_size=4, augment=False,
                                  replacement=True)))
    assert x.shape[:2] == (4, 8)  # copies only when asked for
    # Resuming at a step gives the batches an uninterrupted stream gives, also when bags are grouped by size.
    stream = make_dataset(source, True, image_size=(6, 5), instances=4, batch_size=2, seed=3, repeat=True)
    whole = [x.numpy() for x, _ in stream.take(7)]
    resumed = [x.numpy() for x, _ in make_dataset(source, True, image_size=(6, 5), instances=4, batch_size=2,
                                                  seed=3, repeat=True, start_step=4).take(3)]
    for a, b in zip(whole[4:], resumed):
        np.testing.assert_array_equal(a, b)


def test_small_bags_are_sampled_with_replacement_only_when_asked(tmp_path):
    source = BagSource(_volumes(tmp_path, [2]), normalize="none", progress=False)
    (x, _), = list(make_dataset(source, True, image_size=(6, 5), instances=5, augment=False, replacement=True))
    assert x.shape[1] == 5 and set(x.numpy()[0, :, 0, 0, 0]) <= {0.0, 1.0}
    (x, _), = list(make_dataset(source, True, image_size=(6, 5), instances=5, augment=False))
    assert sorted(x.numpy()[0, :, 0, 0, 0].tolist()) == [0.0, 1.0]


def test_channels_and_normalisation(tmp_path):
    source = BagSource(_volumes(tmp_path, [4]), normalize="minmax", progress=False)
    x, _ = next(iter(make_dataset(source, False, image_size=(6, 5), channels=3)))
    assert x.shape[-1] == 3 and float(x.numpy().max()) == 255.0
    x, _ = next(iter(make_dataset(source, False, image_size=(6, 5), channels=1)))
    assert x.shape[-1] == 1
    ct = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    np.testing.assert_allclose(normalize_volume(ct, (-160, 240)), [0, 0, 127.5, 255, 255])
    with pytest.raises(ValueError, match="Received: normalize='zscore'"):
        normalize_volume(ct, "zscore")


@pytest.mark.slow
def test_model_fit_trains_directly_on_the_dataset(adrenal):
    from mims_tf.models import build_model
    from mims_tf.train import paper_optimizer

    source = BagSource(adrenal, "val", progress=False)
    dataset = make_dataset(source, True, image_size=(24, 24), instances=6, batch_size=16, seed=0)
    model = build_model("mims", backbone="tiny", weights=None, image_size=(24, 24))
    model.compile(optimizer=paper_optimizer(1e-3), loss="sparse_categorical_crossentropy")
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probs = model.predict(make_dataset(source, False, image_size=(24, 24), batch_size=8), verbose=0)
    assert probs.shape == (98, 2)


def test_unreadable_files_fail_or_are_skipped_and_reported(tmp_path, caplog):
    manifest = _volumes(tmp_path, [3, 3, 3])
    (tmp_path / "v1.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'v1.npy'}: unreadable")):
        BagSource(manifest, progress=False)
    source = BagSource(manifest, skip_unreadable=True, progress=False)
    assert len(source) == 2 and source.skipped[0][0] == str(tmp_path / "v1.npy")
    assert "skipped 1 unreadable file(s): " + str(tmp_path / "v1.npy") in caplog.text  # the mims_tf logger


def test_synthetic_set_through_the_pipeline(tmp_path):
    path = write_dataset(tmp_path, splits=(("train", 8), ("test", 4)), instances=6, size=32, lesion_size=(3, 8))
    manifest = from_medmnist(path)
    assert manifest.split_counts() == {"train": 8, "test": 4}
    source = BagSource(manifest, "train", progress=False)
    x, y = next(iter(make_dataset(source, True, image_size=(32, 32), instances=6, batch_size=8)))
    assert x.shape == (8, 6, 32, 32, 3) and sorted(y.numpy().tolist()) == [0] * 4 + [1] * 4


@pytest.mark.parametrize("count", [2, 3])
def test_shards_of_one_seed_are_disjoint_and_cover_every_bag_once_per_epoch(tmp_path, count):
    rows = []
    for i in range(10):  # bag i holds the value i everywhere
        np.save(tmp_path / f"b{i}.npy", np.full((2, 4, 4), i, np.uint8))
        rows.append({"path": str(tmp_path / f"b{i}.npy"), "label": i % 2, "split": "train"})
    source = BagSource(from_rows(rows), progress=False)
    streams = [iter(make_dataset(source, True, image_size=(4, 4), instances=2, augment=False, seed=3, repeat=True,
                                 shard=(index, count))) for index in range(count)]
    lengths = [len(range(index, 10, count)) for index in range(count)]
    orders = []
    for _ in range(3):  # epochs
        epoch = [int(next(stream)[0].numpy()[0, 0, 0, 0, 0]) for stream, n in zip(streams, lengths) for _ in range(n)]
        assert sorted(epoch) == list(range(10))  # every bag once, none twice, across the readers
        orders.append(epoch)
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_bad_shards_are_clear_errors(tmp_path):
    source = BagSource(_volumes(tmp_path, [3, 3]), progress=False)
    for shard in [(2, 2), (0, 0), (-1, 2), "0/2"]:
        with pytest.raises(ValueError, match=r"`shard` must be \(index, count\)"):
            make_dataset(source, True, image_size=(6, 5), instances=2, shard=shard)
    with pytest.raises(ValueError, match="evaluation reads every bag"):
        make_dataset(source, False, image_size=(6, 5), shard=(0, 2))

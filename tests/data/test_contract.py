"""The input contract on small synthetic bags: a JSON round trip, bags of the training kind pass, bags that differ
in count, channels, size, intensity or file type are flagged with the reason, and streaming equals the batch."""

import ast
import json

import numpy as np
import pytest

from mims_tf.data import contract as contract_module
from mims_tf.data.contract import (
    MIN_BAGS_FOR_CONTENT,
    QUANTILES,
    RANGE_MARGIN,
    ContractBuilder,
    InputContract,
    bag_features,
    build_contract,
    check_bag,
    check_features,
    describe_contract,
)


def _bag(rng, instances=4, size=16, channels=1, level=None):
    """A grey bag like the training ones: a vertical gradient, speckle and a per-bag brightness near 120."""
    level = rng.uniform(100, 140) if level is None else level
    rows = np.linspace(-30, 30, size)[None, :, None, None]
    noise = rng.normal(0, 12, (instances, size, size, channels))
    return np.clip(level + rows + noise, 0, 255).astype(np.float32)


def _bags(count=80, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    return [_bag(rng, **kwargs) for _ in range(count)]


@pytest.fixture(scope="module")
def contract():
    return build_contract(((bag, ".npz") for bag in _bags()), central=None, normalize="auto")


def test_json_round_trip_keeps_the_contract_and_its_answers(contract):
    data = json.loads(json.dumps(contract.to_dict()))
    again = InputContract.from_dict(data)
    assert again == contract and again.to_dict() == contract.to_dict()
    assert data["version"] == contract_module.VERSION and data["kind"] == "mims_tf.input_contract"
    assert data["preprocessing"] == {"central": None, "normalize": "auto"} and data["suffixes"] == [".npz"]
    odd = _bag(np.random.default_rng(5), level=230)
    assert check_bag(again, odd) == check_bag(contract, odd) == check_bag(data, odd) != []


def test_from_dict_refuses_what_is_not_a_contract(contract):
    with pytest.raises(ValueError, match="Not an input contract"):
        InputContract.from_dict({"version": 1})
    with pytest.raises(ValueError, match="version 99"):
        InputContract.from_dict(dict(contract.to_dict(), version=99))
    data = contract.to_dict()
    del data["ranges"]
    with pytest.raises(ValueError, match="without ranges"):
        InputContract.from_dict(data)


def test_bags_of_the_training_kind_pass(contract):
    new = _bags(count=100, seed=1)
    flagged = [check_bag(contract, bag, ".npz") for bag in new]
    assert sum(bool(r) for r in flagged) <= 5, [r for r in flagged if r]
    assert check_bag(contract, new[0][..., 0]) == check_bag(contract, new[0])  # (S, H, W): one channel
    assert contract.check(new[0].astype(np.uint8), "NPZ") == []  # dtype and suffix case do not matter


def test_a_different_instance_count_is_named(contract):
    assert "8 instances (trained on 4)" in check_bag(contract, _bag(np.random.default_rng(2), instances=8))
    assert "1 instance (trained on 4)" in check_bag(contract, _bag(np.random.default_rng(2), instances=1))


def test_varying_counts_allow_a_margin():
    rng = np.random.default_rng(0)
    varying = build_contract(_bag(rng, instances=int(n)) for n in rng.integers(4, 13, 60))
    assert varying.to_dict()["instances"] == [4, 12]
    assert not any("instances" in r for r in check_bag(varying, _bag(rng, instances=14)))  # within 25 %
    assert "40 instances (trained on 4-12)" in check_bag(varying, _bag(rng, instances=40))


def test_other_channels_are_named(contract):
    assert "3 channels (trained on 1)" in check_bag(contract, _bag(np.random.default_rng(3), channels=3))


def test_another_instance_size_and_aspect_are_named(contract):
    assert "32x32 instances (trained on 16x16)" in check_bag(contract, _bag(np.random.default_rng(4), size=32))
    reasons = check_bag(contract, _bag(np.random.default_rng(4))[:, :, :12])
    assert "16x12 instances (trained on 16x16)" in reasons


def test_other_intensities_are_named(contract):
    low, high = contract.to_dict()["ranges"]["mean"]
    reasons = check_bag(contract, _bag(np.random.default_rng(5), level=230))
    assert any(r.startswith("mean intensity") and f"outside the training range {low:.0f} to {high:.0f}" in r
               for r in reasons), reasons
    scaled = check_bag(contract, _bag(np.random.default_rng(5)) / 255.0)  # [0, 1] given to a [0, 255] model
    assert any(r.startswith("mean intensity 0.") for r in scaled), scaled
    raw = check_bag(contract, _bag(np.random.default_rng(5)) * 16)  # 12-bit values, not normalised
    assert any(r.startswith("values ") and "outside the training range" in r for r in raw), raw


def test_content_unlike_training_is_named_where_the_ranges_hold(contract):
    rng = np.random.default_rng(6)
    flipped = _bag(rng)[:, ::-1]  # the same intensities, the gradient upside down
    reasons = check_bag(contract, flipped)
    assert [r for r in reasons if r.startswith("content unlike the training bags")], reasons
    assert not any(r.startswith(("mean intensity", "intensity spread")) for r in reasons)


def test_other_file_types_and_bad_values_are_named(contract):
    bag = _bags(count=1, seed=7)[0]
    assert check_bag(contract, bag, ".nii.gz") == ["read from a .nii.gz file (trained on .npz)"]
    broken = bag.copy()
    broken[0, 0, 0, 0] = np.nan
    assert "NaN or infinite values" in check_bag(contract, broken)


def test_streaming_equals_the_batch_result():
    bags = _bags(count=50, seed=8)
    streamed = build_contract(bag for bag in bags)  # a generator: read once, never materialised
    builder = ContractBuilder()
    for bag in bags:
        builder.add(bag)
    assert streamed == builder.build() == build_contract(list(bags))
    # the same figures straight from the stacked bags
    stacked = np.stack(bags)
    data = streamed.to_dict()
    assert data["bags"] == 50 and data["instances"] == [4, 4] and data["channels"] == [1]
    assert data["values"] == [float(stacked.min()), float(stacked.max())]
    means = stacked.mean(axis=(1, 2, 3, 4), dtype=np.float64)
    low, high = np.quantile(means, QUANTILES)
    margin = RANGE_MARGIN * (high - low)
    np.testing.assert_allclose(data["ranges"]["mean"], [low - margin, high + margin], rtol=1e-9)
    np.testing.assert_allclose(data["content"]["mean"][0], means.mean(), rtol=1e-9)


def test_a_reservoir_keeps_the_form_exact_and_the_features_bounded():
    bags = _bags(count=60, seed=9) + [_bag(np.random.default_rng(9), instances=7)]
    data = build_contract(bags, max_bags=40).to_dict()
    assert data["bags"] == 61 and data["bags_sampled"] == 40 and data["instances"] == [4, 7]
    assert build_contract(bags, max_bags=40) == build_contract(iter(bags), max_bags=40)  # seeded


def test_few_bags_give_no_content_check_and_none_give_an_error():
    few = build_contract(_bags(count=MIN_BAGS_FOR_CONTENT - 1))
    assert few.to_dict()["content"] is None
    assert check_bag(few, _bags(count=1, seed=3)[0]) == []
    with pytest.raises(ValueError, match="No bags were added"):
        build_contract([])
    with pytest.raises(ValueError, match="Received: shape=\\(16, 16\\)"):
        bag_features(np.zeros((16, 16)))


def test_features_computed_once_check_against_several_contracts(contract):
    bag = _bag(np.random.default_rng(10), channels=3)
    form, features = bag_features(bag)
    assert check_features(contract, form, features) == check_bag(contract, bag)
    assert "bags of 4 instance(s) 16x16, 1 channel(s)" in describe_contract(contract)


def test_the_module_imports_only_numpy():
    tree = ast.parse(open(contract_module.__file__, encoding="utf-8").read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"numpy", "math", "copy"}, imported

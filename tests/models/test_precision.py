import keras
import numpy as np
import pytest

from mims_tf.models import build_model
from mims_tf.train import paper_optimizer


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_builds_and_runs_with_float32_outputs(policy):
    keras.config.set_dtype_policy(policy)
    model = build_model("mims", backbone="tiny", weights=None, image_size=(24, 24))
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 24, 24, 3)).astype("float32")
    probs = model(x)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    assert model.get_layer("head_ms_conv").compute_dtype == policy.split("_")[1]
    pooling = model.get_layer("head_pooling")
    assert pooling.compute_dtype == "float32" and pooling.logits.dtype == "float32"
    assert model.get_layer("head_magnitude_norm").scale_weights.dtype == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probs).sum(1), 1.0, atol=1e-3)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_one_step(policy):
    keras.config.set_dtype_policy(policy)
    model = build_model("mims", backbone="tiny", weights=None, image_size=(24, 24))
    model.compile(optimizer=paper_optimizer(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 24, 24, 3)).astype("float32")
    before = model.get_layer("head_pooling").get_weights()[0].copy()
    loss = model.train_on_batch(x, np.array([0, 1]))
    assert np.isfinite(loss)
    assert not np.array_equal(before, model.get_layer("head_pooling").get_weights()[0])
    if policy == "mixed_float16":
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"

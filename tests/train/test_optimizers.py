import re

import keras
import numpy as np
import pytest

from mims_tf.models import build_model
from mims_tf.train import Adam, paper_optimizer
from mims_tf.train.optimizers import BACKBONE_PATTERN


def _data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(2, 3, 24, 24, 3)).astype("float32"), np.array([0, 1])


def _step(optimizer, weights):
    keras.utils.set_random_seed(0)
    model = build_model("mims", backbone="tiny", weights=None, image_size=(24, 24))
    model.set_weights(weights)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.train_on_batch(*_data())
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    return model, [a - b for a, b in zip(after, before)]


@pytest.mark.slow
def test_backbone_moves_at_half_the_heads_rate_with_adam():
    weights = build_model("mims", backbone="tiny", weights=None, image_size=(24, 24)).get_weights()
    model, plain = _step(keras.optimizers.Adam(1e-3), weights)
    _, halved = _step(paper_optimizer(1e-3), weights)
    backbone = 0
    for variable, d_plain, d_halved in zip(model.trainable_variables, plain, halved):
        moved = np.abs(d_plain) > 1e-6
        factor = 1.0 if variable.path.startswith("head_") else 0.5
        backbone += factor == 0.5
        np.testing.assert_allclose(d_halved[moved], factor * d_plain[moved], rtol=2e-3, atol=1e-8)
    assert backbone >= 6  # every backbone conv kernel, bias and batchnorm weight


@pytest.mark.slow
def test_multipliers_match_paths_and_survive_save_and_reload(tmp_path):
    optimizer = paper_optimizer(1e-3, backbone_multiplier=0.25)
    assert optimizer.multiplier_for("conv1_conv/kernel") == 0.25
    assert optimizer.multiplier_for("head_ms_conv/kernel_2") == 1.0
    model = build_model("mims", backbone="tiny", weights=None, image_size=(24, 24))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.train_on_batch(*_data())
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(reloaded.optimizer, Adam)
    assert reloaded.optimizer.lr_multipliers == {BACKBONE_PATTERN: 0.25}
    reloaded.train_on_batch(*_data())
    assert int(reloaded.optimizer.iterations) == 2


def test_bad_multipliers_and_optimizer_names():
    with pytest.raises(ValueError, match=re.escape("Received: '.*': -1")):
        Adam(1e-3, lr_multipliers={".*": -1})
    with pytest.raises(ValueError, match="Received: optimizer='rmsprop'"):
        paper_optimizer(optimizer="rmsprop")

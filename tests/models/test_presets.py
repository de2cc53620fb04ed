import keras
import numpy as np
import pytest

import mims_tf
from mims_tf.models import PRESETS, build_model, list_presets, presets_in_table
from mims_tf.train import paper_optimizer

TINY = dict(backbone="tiny", weights=None, image_size=(24, 24))


def _bags(seed=0, b=2, s=3, size=24, c=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(b, s, size, size, c)).astype("float32"), np.array([0, 1])


def test_every_paper_model_is_a_preset():
    names = list_presets()
    table1, table2 = presets_in_table("table1"), presets_in_table("table2")
    assert set(table1) <= set(names) and set(table2) <= set(names)
    assert len(table1) == 12 and len(table2) == 7
    assert "mims_attention" in names
    assert mims_tf.models.list_presets() == list(PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("preset", list_presets())
def test_preset_builds_trains_saves_and_reloads(preset, tmp_path):
    model = build_model(preset, **TINY)
    model.compile(optimizer=paper_optimizer(1e-2), loss="sparse_categorical_crossentropy")
    x, y = _bags()
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert sum(changed) >= 3, "one training step should move the weights"

    probs = model.predict(x, verbose=0)
    assert probs.shape == (2, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    path = tmp_path / f"{preset}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), probs)
    # the reloaded model keeps training with its optimizer state
    reloaded.fit(x, y, batch_size=2, epochs=1, verbose=0)

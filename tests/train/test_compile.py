import numpy as np

from mims_tf.models import build_model
from mims_tf.train import compile_model
from mims_tf.train.optimizers import BACKBONE_PATTERN


def test_compile_model_uses_the_papers_settings_and_trains():
    model = build_model("mims", backbone="tiny", weights=None, image_size=(16, 16), kernels={1: 4})
    assert compile_model(model, learning_rate=2e-3, backbone_multiplier=0.25) is model
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "Adam" and float(optimizer.learning_rate) == np.float32(2e-3)
    assert optimizer.lr_multipliers == {BACKBONE_PATTERN: 0.25}
    assert model.loss == "sparse_categorical_crossentropy"
    x = np.random.default_rng(0).uniform(0, 255, (4, 3, 16, 16, 3)).astype("float32")
    y = np.array([0, 1, 0, 1])
    logs = model.fit(x, y, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "auroc"}  # no accuracy at a fixed 0.5 threshold


def test_compile_model_with_other_optimizers_and_classes():
    model = build_model("mi_pre", backbone="tiny", weights=None, image_size=(16, 16), classes=3)
    compile_model(model, optimizer="sgd", momentum=0.9)
    assert type(model.optimizer).__name__ == "SGD" and float(model.optimizer.momentum) == np.float32(0.9)
    x = np.random.default_rng(1).uniform(0, 255, (3, 2, 16, 16, 3)).astype("float32")
    history = model.fit(x, np.array([0, 1, 2]), epochs=1, verbose=0).history
    assert 0 <= history["auroc"][0] <= 1

"""What `best.keras` holds: the best validation epoch, or the mean of the last epochs' weights (`training.keep`)."""

import keras
import numpy as np
import pytest

from mims_tf.runs.checkpoint import averaged_from, kept_model
from mims_tf.runs.config import RunConfig, TrainingConfig
from tests.conftest import TINY_RUN, requires_tensorflow


def test_what_is_kept_by_default_and_which_epochs_are_averaged():
    assert kept_model(TrainingConfig()) == "best_auroc"
    assert kept_model(TrainingConfig(folds=5)) == "average_last"
    assert kept_model(TrainingConfig(folds=5, keep="best_auroc")) == "best_auroc"
    assert [averaged_from(e) for e in (1, 2, 3, 4, 10, 30)] == [1, 2, 3, 3, 7, 21]  # the last ceil(epochs / 3)
    with pytest.raises(ValueError, match="keep"):
        RunConfig.from_dict(dict(keep="median"))


class Weights(keras.callbacks.Callback):
    """Each epoch's training weights, after the run's own callbacks (which restore them after averaging)."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.epochs, self.stop_after = {}, stop_after

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch + 1] = [np.array(w) for w in self.model.get_weights()]
        if epoch + 1 == self.stop_after:
            raise KeyboardInterrupt("killed")


@requires_tensorflow()
def test_best_keras_is_the_mean_of_the_last_epochs_weights_across_a_resume(tmp_path):
    from mims_tf.runs.fit import resume_config, train
    from mims_tf.runs.folder import RunFolder, load_keras_file

    out = str(tmp_path / "run")
    config = RunConfig.from_dict(dict(out=out, keep="average_last", **{**TINY_RUN, "epochs": 4, "steps_per_epoch": 2}))
    first = Weights(stop_after=3)  # epochs 3 and 4 are averaged; stopped after epoch 3, resumed for epoch 4
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, callbacks=[first])
    second = Weights()
    summary = train(resume_config(out), resume=True, verbose=0, callbacks=[second])
    run = RunFolder(out)
    expected = [(a + b) / 2 for a, b in zip(first.epochs[3], second.epochs[4])]
    for kept, mean in zip(load_keras_file(run.model_path("best")).get_weights(), expected):
        np.testing.assert_allclose(kept, mean, rtol=1e-6, atol=1e-6)
    for last, trained in zip(load_keras_file(run.model_path("last")).get_weights(), second.epochs[4]):
        np.testing.assert_array_equal(last, trained)  # training went on from its own weights, not the mean
    assert run.state()["averaged"] == {"from": 3, "epochs": 2} and summary["best_epoch"] == 4
    assert summary["best_val_auroc"] == summary["decision"]["val_auroc"]  # the mean's own, scored exactly

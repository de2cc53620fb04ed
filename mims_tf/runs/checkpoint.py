"""The callbacks that write a run folder while it trains: `last.keras` every few steps and each epoch, `best.keras`
(by validation AUROC, ties to the lower loss; or the mean of the last epochs' weights), `state.json`, and
`log.csv` with epochs counted from 1."""

import logging
import math

import keras

from mims_tf.runs.decision import forget_decision
from mims_tf.runs.folder import load_keras_file

logger = logging.getLogger("mims_tf")


def step_of(model):
    """The global step: the optimizer's iteration count (a mirrored variable under a strategy)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations.value.read_value()))


def kept_model(training):
    """What `best.keras` holds under a `TrainingConfig`: its `keep`, else `"average_last"` for a cross-validated
    run (it did best out of fold, `benchmarks/model_choice.py`) and `"best_auroc"` for one split."""
    return training.keep or ("average_last" if training.folds else "best_auroc")


def averaged_from(epochs):
    """The first epoch (from 1) whose weights `average_last` averages: the last ceil(epochs / 3) are."""
    return epochs - math.ceil(epochs / 3) + 1


class RunCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` every `every` steps and each epoch, and `best.keras` by validation AUROC.

    A tie in validation AUROC (common on a small validation split, where it saturates at 1.0) goes to the
    epoch with the lower validation loss, so `best.keras` is not stuck at the first epoch that reached it.
    With `average_from` (an epoch, from 1), `best.keras` holds from that epoch on the running mean of the
    weights of the epochs since (batch-norm statistics too); `state.json` records how many (`averaged`), so a
    resumed run goes on with that mean.
    """

    def __init__(self, run, every, state, steps_per_epoch=None, saved_model=None, average_from=None):
        super().__init__()
        self.run, self.every, self.state, self.steps_per_epoch = run, every, state, steps_per_epoch
        self.saved_model = saved_model  # the model to save, when the one training is its head (cached features)
        self.average_from, self.mean = average_from, None
        self.nan_step = None
        # The part of an epoch run before a resume (its steps and loss sum), so the epoch's logged loss covers
        # all its steps, not only those after the resume.
        self.before = state.pop("partial_epoch", None)
        self.epoch, self.batches, self.loss = 0, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches, self.loss = epoch, 0, None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):  # stop; keep the last good checkpoints
            self.nan_step = step_of(self.model)
            self.model.stop_training = True
            return
        self.batches, self.loss = batch + 1, None if loss is None else float(loss)  # Keras: this call's mean
        step = step_of(self.model)
        # At an epoch's last step, last.keras is saved after validation (on_epoch_end): a kill during
        # validation then resumes that epoch's validation instead of skipping it.
        if step % self.every == 0 and not (self.steps_per_epoch and step % self.steps_per_epoch == 0):
            self.save("last")
            if self.loss is not None:
                steps, total = self._so_far()
                self.run.save_state({**self.state, "partial_epoch": {"epoch": self.epoch + 1, "steps": steps,
                                                                     "loss_sum": total}})

    def _so_far(self):
        """`(steps, loss sum)` of the current epoch so far, the part before a resume included."""
        before = self.before if self.before and self.before.get("epoch") == self.epoch + 1 else None
        steps, total = self.batches, (self.loss or 0.0) * self.batches
        if before:
            steps, total = steps + before["steps"], total + before["loss_sum"]
        return steps, total

    def save(self, which):
        self.run.save_model(self.saved_model or self.model, which)
        forget_decision(self.run, which)  # the model changed: its calibration and threshold are chosen again
        self.run.forget_outputs(which)  # and no evaluation or heatmap describes its predecessor

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if self.before and self.before.get("epoch") == epoch + 1 and logs.get("loss") is not None:
            self.loss = float(logs["loss"])
            steps, total = self._so_far()
            logs["loss"] = total / steps  # the whole epoch's mean loss (the callbacks after this one log it)
        self.before = None
        val_loss = logs.get("val_loss")
        if self.nan_step is None and val_loss is not None and not math.isfinite(float(val_loss)):
            self.nan_step = step_of(self.model)  # the weights went non-finite without a NaN training loss
            self.model.stop_training = True
        if self.nan_step is not None:
            return
        auroc, loss = logs.get("val_auroc"), logs.get("val_loss", math.inf)
        averaging = self.average_from is not None and epoch + 1 >= self.average_from
        if auroc is not None and not averaging and is_better(auroc, loss, self.state):
            self.save("best")
            self.state.update(best_val_auroc=float(auroc), best_val_loss=float(loss), best_epoch=epoch + 1)
        if auroc is not None and auroc >= 1.0 and not self.state.get("saturated"):
            self.state["saturated"] = True
            logger.warning("validation AUROC reached 1.0 at epoch %d: it cannot rank later epochs; ties go to the "
                           "lower validation loss, and a threshold chosen on this split is unreliable", epoch + 1)
        self.save("last")
        if averaging:
            self._average(epoch + 1)
        self.state["epochs_done"] = epoch + 1
        self.run.save_state(self.state)

    def _average(self, epoch):
        """`best.keras` = the mean of the weights of the epochs from `average_from` to `epoch`."""
        target = self.saved_model or self.model
        weights = target.get_weights()
        averaged = self.state.get("averaged") or {}
        count = averaged.get("epochs", 0) if averaged.get("from") == self.average_from else 0  # else a new window
        if count and self.mean is None:  # resumed inside the window: the mean so far is in best.keras
            self.mean = load_keras_file(self.run.model_path("best")).get_weights()
        self.mean = weights if not count else [m + (w - m) / (count + 1) for m, w in zip(self.mean, weights)]
        target.set_weights(self.mean)
        try:
            self.save("best")
        finally:
            target.set_weights(weights)  # training goes on from its own weights
        self.state.update(averaged={"from": self.average_from, "epochs": count + 1}, best_epoch=epoch)


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """`log.csv`, one row per epoch, epochs counted from 1 (as every message and `state.json` count them)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def is_better(auroc, loss, state):
    """A higher validation AUROC, or the same with a lower validation loss, than the best so far."""
    best = state["best_val_auroc"]
    best_loss = state.get("best_val_loss")
    return auroc > best or (auroc == best and loss < (math.inf if best_loss is None else best_loss))

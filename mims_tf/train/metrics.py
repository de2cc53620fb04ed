"""Bag-level AUROC as a Keras metric for softmax outputs and integer labels."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mims_tf")
class BagAUROC(keras.metrics.AUC):
    """Area under the ROC curve of `P(positive_class)` against integer labels.

    `keras.metrics.AUC` wants binary targets shaped like the scores; MIMS models
    output softmax probabilities `(B, classes)` and datasets give integer labels
    `(B,)`. For two classes this is the AUROC of class 1; for more, the mean of
    one-vs-rest AUROCs. Keras approximates the curve with `num_thresholds`
    evenly spaced buckets of the score; reports use scikit-learn's exact value
    on all bags. The best epoch is chosen on this metric, so it needs fine
    buckets: an untrained model's scores may all lie within 0.02 of 0.5, where
    1,000 buckets put the AUROC of 30 validation bags 0.016 off the exact one;
    20,000 (5e-5 wide) leave it at most a tie or two off (0.002 there), at no
    measurable cost (one cumulative sum per batch).

    Args:
        classes: number of classes.
        num_thresholds: thresholds of the approximation.
        name: metric name (default "auroc").
    """

    def __init__(self, classes=2, num_thresholds=20000, name="auroc", **kwargs):
        kwargs.pop("multi_label", None)
        kwargs.pop("num_labels", None)
        super().__init__(
            num_thresholds=num_thresholds,
            name=name,
            multi_label=classes > 2,
            num_labels=classes if classes > 2 else None,
            **kwargs,
        )
        self.classes = classes

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        if self.classes == 2:
            return super().update_state(labels, y_pred[:, 1], sample_weight=sample_weight)
        return super().update_state(ops.one_hot(labels, self.classes), y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"classes": self.classes})
        return config

"""Compile a MIMS model with the paper's settings in one call."""

from mims_tf.train.metrics import BagAUROC
from mims_tf.train.optimizers import paper_optimizer


def compile_model(model, learning_rate=1e-4, backbone_multiplier=0.5, optimizer="adam", **optimizer_kwargs):
    """Compiles with the paper's training settings (supplement A).

    Adam with the backbone at `backbone_multiplier` times the head's learning
    rate (a per-variable rate), sparse categorical cross-entropy on the class
    probabilities, and bag-level AUROC (`BagAUROC`) as the metric. No accuracy: at
    the fixed 0.5 threshold it can read 0.5 by construction while probabilities are
    uncalibrated (runs choose the decision threshold on validation after training).

    Args:
        model: a model from `mims_tf.models.build_model`.
        learning_rate: the head's learning rate.
        backbone_multiplier: the backbone's share of it (paper: 0.5).
        optimizer: `"adam"`, `"adamw"` or `"sgd"`.
        **optimizer_kwargs: passed to the optimizer.

    Returns:
        The model, compiled.
    """
    classes = model.output_shape[-1]
    model.compile(
        optimizer=paper_optimizer(learning_rate, backbone_multiplier, optimizer, **optimizer_kwargs),
        loss="sparse_categorical_crossentropy",
        metrics=[BagAUROC(classes)],
    )
    return model

"""Training helpers."""

from mims_tf.train.optimizers import SGD, Adam, AdamW, LearningRateMultipliers, paper_optimizer

__all__ = ["Adam", "AdamW", "LearningRateMultipliers", "SGD", "paper_optimizer"]

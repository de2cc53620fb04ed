"""Training: optimizers with per-variable learning rates, metrics, compile helper, runs."""

from mims_tf.train.compile import compile_model
from mims_tf.train.metrics import BagAUROC
from mims_tf.train.optimizers import SGD, Adam, AdamW, LearningRateMultipliers, paper_optimizer

__all__ = ["Adam", "AdamW", "BagAUROC", "LearningRateMultipliers", "SGD", "compile_model", "paper_optimizer"]

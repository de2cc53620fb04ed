"""Runs: the run folder and everything done around it.

    config.py    `RunConfig`: the nested configuration (model, data, training blocks), YAML in and out
    folder.py    `RunFolder`: the folder's layout; reads and writes config, manifest, state, models
    inputs.py    the manifest of a new run; bags read the way the run was trained
    fit.py       `train`: fit a run, resume it after a crash
    evaluate.py  `evaluate_run`, `evaluate_runs`: bag-level metrics, per-bag CSV, ROC curve
    predict.py   `predict`: class probabilities for new files or a manifest
    export.py    `export_run`: SavedModel, TFLite or .keras, with the run's preparation metadata
    explain.py   `explain_file`: heatmaps of the run's decision on one file
"""

from mims_tf.runs.config import DataConfig, RunConfig, TrainingConfig, load_config, save_config
from mims_tf.runs.folder import RunFolder

__all__ = ["DataConfig", "RunConfig", "RunFolder", "TrainingConfig", "load_config", "save_config"]

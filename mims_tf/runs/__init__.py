"""Runs: the run folder and everything done around it. Every entry point takes a `RunFolder` (or its path).

    config.py    `RunConfig`: the nested configuration (model, data, training, decision blocks), YAML in and
                 out, and the schema of `mims train`'s flags
    folder.py    `RunFolder`: the folder's layout, its holds (one training, or any number of readers); reads,
                 caches and writes config, manifest, models
    inputs.py    the manifest of a new run; bags read the way the run was trained
    fit.py       `train`: fit a run, resume it after a crash (`resume_config`)
    checkpoint.py  the callbacks that write the run folder while it trains (models, state, log.csv)
    cv.py        cross-validation: K fold runs in one parent run, out-of-fold decision, the fold ensemble
    contract.py  the run's input contract: recorded at training, checked on every bag scored
    decision.py  `calibrate_run`, `decide_run`: the run's own and named decisions (calibration and threshold
                 chosen on validation); the scoring model
    evaluate.py  `evaluate_run`, `evaluate_runs`: bag-level metrics, per-bag CSV, ROC curve
    predict.py   `predict`: class probabilities for new files or a manifest
    export.py    `export_run`: SavedModel, TFLite or .keras, with the run's preparation metadata and hashes;
                 `check_export`: does an export still serve its run
    explain.py   `explain_file`: heatmaps of the run's decision on one file

The entry points that need TensorFlow load it on first use: `import mims_tf.runs` stays light.
"""

import importlib

from mims_tf.runs.config import DataConfig, DecisionConfig, RunConfig, TrainingConfig, load_config, save_config
from mims_tf.runs.folder import RunFolder

_LAZY = {
    "train": "mims_tf.runs.fit",
    "resume_config": "mims_tf.runs.fit",
    "calibrate_run": "mims_tf.runs.decision",
    "decide_run": "mims_tf.runs.decision",
    "evaluate_run": "mims_tf.runs.evaluate",
    "evaluate_runs": "mims_tf.runs.evaluate",
    "evaluate_out_of_fold": "mims_tf.runs.cv",
    "predict": "mims_tf.runs.predict",
    "export_run": "mims_tf.runs.export",
    "check_export": "mims_tf.runs.export",
    "explain_file": "mims_tf.runs.explain",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mims_tf.runs' has no attribute {name!r}")


__all__ = ["DataConfig", "DecisionConfig", "RunConfig", "RunFolder", "TrainingConfig", "load_config", "save_config",
           *_LAZY]

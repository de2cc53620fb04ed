"""The run folder: one object knows its layout and reads and writes every file in it.

    config.yaml      the run's configuration (`RunConfig`, nested), with the resolved precision
    manifest.csv     the manifest with the splits used
    last.keras       model and optimizer state, every `checkpoint_steps` steps and every epoch
    best.keras       the model of the epoch with the best validation AUROC
    state.json       best validation AUROC and its epoch, epochs done
    log.csv          one row of metrics per epoch
    tensorboard/     TensorBoard logs
    decision.json    the temperature and the decision threshold chosen on validation (per model)
    eval_<stem>.*    evaluation outputs (per-bag CSV, metrics JSON), roc_<stem>.png, reliability_<stem>.png
    explain/         heatmaps
    export/          TFLite and .keras exports

Every file is written to a temporary name and renamed into place, so a crash never leaves half a file.
"""

import os

from mims_tf.runs.config import load_config, save_config
from mims_tf.utils import atomic_path, read_json, write_json


def load_keras_file(path):
    """`keras.saving.load_model(path, safe_mode=True)`; any failure (a truncated or corrupted file, a config
    naming code that safe mode refuses, an unknown class) becomes one `ValueError` naming the file."""
    import keras

    import mims_tf

    mims_tf.register_serializables()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - whatever Keras, zipfile or h5py raise: one line with the file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        import zipfile

        if os.path.isfile(path) and not zipfile.is_zipfile(path):  # Keras then says "File not found"
            raise ValueError(f"{path}: not a loadable Keras model file (not a .keras zip archive: truncated or "
                             "damaged?)") from None
        raise ValueError(f"{path}: not a loadable Keras model file ({type(error).__name__}: {message[:300]})") from None


NEW_STATE = {"best_val_auroc": -1.0, "best_val_loss": None, "best_epoch": None, "epochs_done": 0}


class RunFolder:
    """A run folder on disk (see the module docstring for its layout).

    Args:
        path: the folder.

    Example:

    >>> run = RunFolder("runs/adrenal")
    >>> model = run.load_model("best")
    >>> config, manifest = run.config(), run.manifest()
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunFolder({self.path!r})"

    def file(self, name):
        """The path of `name` inside the run folder."""
        return os.path.join(self.path, name)

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.path))

    @property
    def config_path(self):
        return self.file("config.yaml")

    @property
    def manifest_path(self):
        return self.file("manifest.csv")

    @property
    def state_path(self):
        return self.file("state.json")

    @property
    def log_path(self):
        return self.file("log.csv")

    @property
    def tensorboard_dir(self):
        return self.file("tensorboard")

    def model_path(self, which="best"):
        """`best.keras` or `last.keras`."""
        if which not in ("best", "last"):
            raise ValueError(f"`which` must be 'best' or 'last'. Received: which={which!r}")
        return self.file(f"{which}.keras")

    def exists(self):
        """True where the folder holds a run (a config.yaml)."""
        return os.path.isfile(self.config_path)

    def check(self, which="best"):
        """Raises ValueError unless the folder holds a run with `<which>.keras` (`which=None`: any run)."""
        if not os.path.isdir(self.path):
            raise ValueError(f"{self.path}: run folder not found")
        if not self.exists():
            raise ValueError(f"{self.path}: not a run folder (no config.yaml)")
        if which is not None and not os.path.isfile(self.model_path(which)):
            raise ValueError(f"{self.path}: no {which}.keras (was the run trained for at least one epoch?)")
        return self

    # --- configuration, manifest, state -------------------------------------------------------------

    def config(self):
        """The stored `RunConfig`."""
        return load_config(self.config_path)

    def save_config(self, config):
        save_config(config, self.config_path)

    def manifest(self, classes=None):
        """The stored manifest, with the run's classes in order."""
        from mims_tf.data import read_manifest

        data = self.config().data
        return read_manifest(self.manifest_path, classes=data.classes if classes is None else classes,
                             check_files=False, allow_shared_groups=data.allow_shared_groups,
                             group_pattern=data.group_pattern)

    def save_manifest(self, manifest):
        from mims_tf.data import write_manifest

        write_manifest(manifest, self.manifest_path)

    def state(self):
        """The stored state (best validation AUROC, its epoch, epochs done); defaults where absent."""
        state = dict(NEW_STATE)
        if os.path.isfile(self.state_path):
            number, null = (int, float), type(None)
            state.update(read_json(self.state_path, {"best_val_auroc": number, "best_val_loss": (*number, null),
                                                     "best_epoch": (int, null), "epochs_done": int,
                                                     "training_instances": list}))
        return state

    def save_state(self, state):
        write_json(self.state_path, state)

    # --- models ---------------------------------------------------------------------------------------

    def save_model(self, model, which):
        """Saves `model` as `best.keras` or `last.keras`, atomically."""
        with atomic_path(self.model_path(which), suffix=".keras") as tmp:
            model.save(tmp)

    def load_model(self, which="best"):
        """The run's `best.keras` or `last.keras` (safe mode: no code from the file runs)."""
        self.check(which)
        return load_keras_file(self.model_path(which))

    def load(self, which="best"):
        """`(model, config, manifest)` of the run."""
        self.check(which)
        config = self.config()
        return self.load_model(which), config, self.manifest(config.data.classes)

    # --- outputs --------------------------------------------------------------------------------------

    def evaluation_paths(self, stem):
        """Paths of an evaluation's per-bag CSV, metrics JSON and ROC plot (`stem`: `test`, `test_4inst`)."""
        return {"csv": self.file(f"eval_{stem}.csv"), "json": self.file(f"eval_{stem}.json"),
                "roc": self.file(f"roc_{stem}.png"), "reliability": self.file(f"reliability_{stem}.png")}

    def explain_dir(self, name):
        return os.path.join(self.path, "explain", name)

    @property
    def export_dir(self):
        return self.file("export")

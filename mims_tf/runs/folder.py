"""The run folder: one object knows its layout and reads and writes every file in it.

    config.yaml      the run's configuration (`RunConfig`, nested), with the resolved precision
    manifest.csv     the manifest with the splits used
    last.keras       model and optimizer state, every `checkpoint_steps` steps and every epoch
    best.keras       the model of the epoch with the best validation AUROC
    state.json       best validation AUROC and its epoch, epochs done
    log.csv          one row of metrics per epoch
    tensorboard/     TensorBoard logs
    decision.json    the calibration and the decision threshold chosen on validation (per model)
    environment.json the machine and library versions of each start or resume
    .lock            held by the training process (`RunFolder.lock`)
    eval_<stem>.*    evaluation outputs (per-bag CSV, metrics JSON), roc_<stem>.png, reliability_<stem>.png
    explain/         heatmaps
    export/          TFLite and .keras exports

Every file is written to a temporary name and renamed into place, so a crash never leaves half a file.
`RunFolder` owns every name above; the `runs` entry points take one (or a path) and share its cached
config, manifest and models.
"""

import contextlib
import os
import shutil

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
LOCK = ".lock"
RUN_FILES = ("config.yaml", "manifest.csv", "last.keras", "best.keras", "state.json", "log.csv", "decision.json",
             "environment.json", "tensorboard", "explain", "export", "data")
EVALUATION_PREFIXES = ("eval_", "roc_", "reliability_")


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
        self._config = None
        self._models = {}

    @classmethod
    def of(cls, run):
        """`run` itself if it is a `RunFolder`, else the `RunFolder` of the path `run`."""
        return run if isinstance(run, cls) else cls(run)

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

    @property
    def decision_path(self):
        return self.file("decision.json")

    @property
    def environment_path(self):
        return self.file("environment.json")

    @property
    def lock_path(self):
        return self.file(LOCK)

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
        """The stored `RunConfig` (read once)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def save_config(self, config):
        save_config(config, self.config_path)
        self._config = config

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
        self._models.pop(which, None)

    def load_model(self, which="best"):
        """The run's `best.keras` or `last.keras` (safe mode: no code from the file runs), loaded once; a fresh
        copy with `fresh=True` semantics is `load_keras_file(run.model_path(which))`."""
        self.check(which)
        if which not in self._models:
            self._models[which] = load_keras_file(self.model_path(which))
        return self._models[which]

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

    # --- the folder as a whole ------------------------------------------------------------------------

    def contents(self):
        """The names in the folder, but the lock file."""
        return [n for n in os.listdir(self.path) if n != LOCK] if os.path.isdir(self.path) else []

    @staticmethod
    def is_run_file(name):
        """A file or folder a run writes (`RUN_FILES`, evaluations, temporaries of atomic writes)."""
        return name in RUN_FILES or name.startswith(EVALUATION_PREFIXES) or ".tmp" in name

    def empty(self):
        """Removes everything in the folder but the lock file."""
        for name in self.contents():
            target = self.file(name)
            shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
        self._config, self._models = None, {}

    @contextlib.contextmanager
    def lock(self):
        """An exclusive lock on the run folder for the life of the block (released if the process dies)."""
        os.makedirs(self.path, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here
            yield
            return
        with open(self.lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ValueError(f"{self.path}: another process is training in this run folder") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

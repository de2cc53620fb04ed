"""The run folder: one object knows its layout and reads and writes every file in it.

    config.yaml      the run's configuration (`RunConfig`, nested), with the resolved precision
    manifest.csv     the manifest with the splits used
    last.keras       model and optimizer state, every `checkpoint_steps` steps and every epoch
    best.keras       the model of the epoch with the best validation AUROC (or the mean of the last epochs')
    state.json       best validation AUROC and its epoch, epochs done
    log.csv          one row of metrics per epoch
    tensorboard/     TensorBoard logs
    decision.json    the run's own decision: calibration and threshold chosen on validation (per model)
    decisions/       named decisions (`<name>.json`: another operating point), never replaced
    input_contract.json  what the training bags looked like (`mims_tf.data.contract`), checked on new bags
    environment.json the machine and library versions of each start or resume
    .lock            held by the training process (`RunFolder.lock`), shared by readers (`RunFolder.reading`)
    eval_<stem>.*    evaluation outputs (per-bag CSV, metrics JSON), roc_<stem>.png, reliability_<stem>.png
    explain/         heatmaps
    export/          TFLite and .keras exports
    fold_<k>/, folds/, oof.csv   a cross-validated run's folds (`mims_tf.runs.cv`): its model is their ensemble

Every file is written to a temporary name and renamed into place, so a crash never leaves half a file.
`RunFolder` owns every name above; the `runs` entry points take one (or a path) and share its cached
config, manifest and models.

One rule keeps the folder a sealed record: a training holds the run alone (`lock`); every other command
(evaluate, predict, explain, export, decide) reads it under a shared hold (`reading`), so it refuses in one
line while a training runs, and a training refuses to start while one of them runs. Evaluations record the
hash of the model they scored, and a model saved again drops the outputs made from its predecessor.
Paths in `config.yaml` and `manifest.csv` are stored relative to the run folder, so a run folder moved
together with its data (at the same relative place) works where it lands.
"""

import contextlib
import os
import re
import shutil

from mims_tf.runs.config import load_config, save_config
from mims_tf.utils import atomic_path, file_sha256, json_sha256, read_json, write_json

_HELD = set()  # real paths of the run folders this process holds (a training calibrating its own model)


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
DECISIONS = "decisions"
RUN_FILES = ("config.yaml", "manifest.csv", "last.keras", "best.keras", "state.json", "log.csv", "decision.json",
             DECISIONS, "input_contract.json", "environment.json", "tensorboard", "explain", "export", "data", "folds",
             "oof.csv", "oof.json")
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
        self._hashes = {}

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

    def named_decision_path(self, name):
        """`decisions/<name>.json`: a named decision (see `mims_tf.runs.decision`)."""
        return os.path.join(self.path, DECISIONS, f"{name}.json")

    def decision_names(self):
        """The names of the run's named decisions, sorted."""
        folder = self.file(DECISIONS)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith("."))

    @property
    def contract_path(self):
        return self.file("input_contract.json")

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
        """Raises ValueError unless the folder holds a run with `<which>.keras` (`which=None`: any run; a
        cross-validated run: in every fold)."""
        if not os.path.isdir(self.path):
            raise ValueError(f"{self.path}: run folder not found")
        if not self.exists():
            raise ValueError(f"{self.path}: not a run folder (no config.yaml)")
        for run in self.folds() or [self]:
            if which is not None and not os.path.isfile(run.model_path(which)):
                raise ValueError(f"{run.path}: no {which}.keras (was the run trained for at least one epoch?)")
        return self

    # --- cross-validation (`mims_tf.runs.cv`) ---------------------------------------------------------

    def fold_path(self, k):
        return self.file(f"fold_{k}")

    def folds(self):
        """The fold run folders of a cross-validated run, in order; [] for a run of one split."""
        folds = self.config().training.folds if self.exists() else None
        return [RunFolder(self.fold_path(k)) for k in range(1, folds + 1)] if folds else []

    def forget(self):
        """Drops what was read and cached (config, models, hashes)."""
        self._config, self._models, self._hashes = None, {}, {}

    # --- configuration, manifest, state -------------------------------------------------------------

    def config(self):
        """The stored `RunConfig` (read once)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def save_config(self, config):
        """Stores `config` with its paths relative to the run folder (`save_config(..., relative=True)`)."""
        save_config(config, self.config_path, relative=True)
        self._config = config

    def manifest(self, classes=None):
        """The stored manifest, with the run's classes in order."""
        from mims_tf.data import read_manifest

        data = self.config().data
        return read_manifest(self.manifest_path, classes=data.classes if classes is None else classes,
                             check_files=False, allow_shared_groups=data.allow_shared_groups,
                             group_pattern=data.group_pattern)

    def save_manifest(self, manifest):
        """Stores the manifest with its file paths relative to the run folder (read back from there)."""
        from mims_tf.data import write_manifest

        write_manifest(manifest, self.manifest_path, relative=True)

    def state(self):
        """The stored state (best validation AUROC, its epoch, epochs done); defaults where absent."""
        state = dict(NEW_STATE)
        if os.path.isfile(self.state_path):
            number, null = (int, float), type(None)
            state.update(read_json(self.state_path, {"best_val_auroc": number, "best_val_loss": (*number, null),
                                                     "best_epoch": (int, null), "epochs_done": int,
                                                     "training_instances": list, "config": dict}))
        return state

    def save_state(self, state):
        write_json(self.state_path, state)

    # --- models ---------------------------------------------------------------------------------------

    def save_model(self, model, which):
        """Saves `model` as `best.keras` or `last.keras`, atomically."""
        with atomic_path(self.model_path(which), suffix=".keras") as tmp:
            model.save(tmp)
        self._models.pop(which, None)
        self._hashes.pop(which, None)

    def model_sha256(self, which="best"):
        """The SHA-256 of `best.keras` or `last.keras` (what evaluations, decisions and exports record)."""
        self.check(which)
        if which not in self._hashes:
            folds = self.folds()
            self._hashes[which] = (json_sha256([fold.model_sha256(which) for fold in folds]) if folds
                                   else file_sha256(self.model_path(which)))
        return self._hashes[which]

    def load_model(self, which="best"):
        """The run's `best.keras` or `last.keras` (safe mode: no code from the file runs), loaded once; a fresh
        copy with `fresh=True` semantics is `load_keras_file(run.model_path(which))`."""
        self.check(which)
        if which not in self._models:
            folds = self.folds()
            if folds:  # a cross-validated run: the mean of its folds' models
                from mims_tf.runs.cv import ensemble

                self._models[which] = ensemble([fold.load_model(which) for fold in folds])
            else:
                self._models[which] = load_keras_file(self.model_path(which))
        return self._models[which]

    def load(self, which="best"):
        """`(model, config, manifest)` of the run."""
        self.check(which)
        config = self.config()
        model, manifest = self.load_model(which), self.manifest(config.data.classes)
        outputs = model.outputs[0].shape[-1]
        if outputs != len(manifest.classes):
            raise ValueError(f"{self.model_path(which)}: gives {outputs} classes, but the run's manifest.csv has "
                             f"{len(manifest.classes)} ({', '.join(manifest.classes)}): this is not the run's model; "
                             "restore the run's own file")
        return model, config, manifest

    # --- outputs --------------------------------------------------------------------------------------

    def evaluation_paths(self, stem):
        """Paths of an evaluation's per-bag CSV, metrics JSON and ROC plot (`stem`: `test`, `test_4inst`)."""
        return {"csv": self.file(f"eval_{stem}.csv"), "json": self.file(f"eval_{stem}.json"),
                "roc": self.file(f"roc_{stem}.png"), "reliability": self.file(f"reliability_{stem}.png")}

    def forget_outputs(self, which):
        """Removes what was made from the previous `which` model (evaluation files, and for best the heatmaps):
        after a model is saved again, no file in the run describes its predecessor."""
        removed = []
        for name in sorted(os.listdir(self.path)):
            if not (name.startswith("eval_") and name.endswith(".json")):
                continue
            try:
                made_from = read_json(self.file(name)).get("model", "best")
            except ValueError:
                made_from = which  # a damaged evaluation describes nothing: it goes too
            if made_from == which:
                stem = name[len("eval_"): -len(".json")]
                for path in self.evaluation_paths(stem).values():
                    if os.path.lexists(path):
                        os.remove(path)
                        removed.append(path)
        if which == "best" and os.path.isdir(self.file("explain")):
            shutil.rmtree(self.file("explain"))
            removed.append(self.file("explain"))
        return removed

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
        return (name in RUN_FILES or name.startswith(EVALUATION_PREFIXES) or ".tmp" in name
                or re.fullmatch(r"fold_\d+", name) is not None)

    def empty(self):
        """Removes everything in the folder but the lock file."""
        for name in self.contents():
            target = self.file(name)
            shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
        self._config, self._models = None, {}

    @contextlib.contextmanager
    def lock(self):
        """The training's hold: the run folder is this process's alone for the block (released if the process
        dies); refused in one line while another training or any reader holds it."""
        os.makedirs(self.path, exist_ok=True)
        with self._hold(exclusive=True):
            yield

    @contextlib.contextmanager
    def reading(self):
        """A reader's hold (evaluate, predict, explain, export, decide): any number at once, none while a
        training holds the run (refused in one line: its models are not final yet)."""
        with self._hold(exclusive=False):
            yield

    @contextlib.contextmanager
    def _hold(self, exclusive):
        key = os.path.realpath(self.path)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here
            fcntl = None
        if key in _HELD or fcntl is None:  # held by this process already (nested calls, a training calibrating)
            yield
            return
        try:
            handle = open(self.lock_path, "a")
        except OSError:
            if exclusive or not os.path.isfile(self.lock_path):  # a read-only folder that never held a training
                if exclusive:
                    raise
                yield
                return
            handle = open(self.lock_path)
        with handle:
            try:
                fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except OSError:
                raise ValueError(self._busy(handle, exclusive)) from None
            _HELD.add(key)
            try:
                yield
            finally:
                _HELD.discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _busy(self, handle, exclusive):
        import fcntl

        if not exclusive:
            return (f"{self.path}: a training is running in this run folder and its models are not final; wait for "
                    "it to end (nothing was read or written)")
        try:  # a shared hold succeeds where only readers hold the run
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            return f"{self.path}: another process is training in this run folder"
        return (f"{self.path}: another process is reading this run folder (evaluate, predict, explain, export or "
                "decide); wait for it to end, then train")

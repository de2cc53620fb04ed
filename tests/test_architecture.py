"""The package's structure: imports only go downwards, no cycles, a quiet library, files of a readable size."""

import ast
import os
import subprocess
import sys

import pytest

import mims_tf

PACKAGE = os.path.dirname(mims_tf.__file__)
# Lower ranks never import higher ones: utils, stats < layers < data, models, export < train, explain < runs < bench
# < cli. `stats` (NumPy, SciPy, scikit-learn) is on the lowest floor; `runs` (the workflow) sits above `train`.
RANKS = {"utils": 0, "stats": 0, "layers": 1, "data": 2, "models": 2, "export": 2, "train": 3, "explain": 3,
         "runs": 4, "bench": 5, "cli": 6}


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
                yield parts, path


def _room(parts):
    return parts[0]


def _imports(path):
    """Every `mims_tf.<room>` a module imports, at module level or inside functions."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mims_tf" and len(parts) > 1 and parts[1] in RANKS:
                yield parts[1]


def _graph():
    graph = {}
    for parts, path in _modules():
        if parts == ["__init__"]:  # the package root registers the serializable classes
            continue
        room = _room(parts)
        assert room in RANKS, f"{path}: a room the architecture test does not know; add it to RANKS"
        graph.setdefault(room, set()).update(r for r in _imports(path) if r != room)
    return graph


def test_imports_only_go_downwards():
    upward = [f"{room} imports {other}" for room, others in _graph().items() for other in others
              if RANKS[other] > RANKS[room]]
    assert not upward, upward


def test_stats_is_on_the_lowest_floor_and_runs_above_train():
    graph = _graph()
    assert graph.get("stats", set()) <= {"utils"}, graph.get("stats")
    assert "train" in graph["runs"] and "runs" not in graph.get("train", set())
    assert RANKS["stats"] == min(RANKS.values()) and RANKS["runs"] > RANKS["train"]


def test_no_cycle_between_rooms():
    graph = _graph()
    state = {}

    def visit(room, path):
        state[room] = "open"
        for other in graph.get(room, ()):
            assert state.get(other) != "open", f"import cycle: {' -> '.join(path + [other])}"
            if other not in state:
                visit(other, path + [other])
        state[room] = "done"

    for room in graph:
        if room not in state:
            visit(room, [room])


def test_the_library_does_not_print_or_read_the_command_line():
    offenders = []
    for parts, path in _modules():
        if parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path}:{node.lineno} print")
            if isinstance(node, ast.Attribute) and node.attr == "argv" and getattr(node.value, "id", None) == "sys":
                offenders.append(f"{path}:{node.lineno} sys.argv")
    assert not offenders, offenders


def test_library_messages_name_arguments_not_flags():
    """Errors and log lines of the library (not the CLI) never tell the user to pass a `--flag`."""
    import re

    offenders = []
    for parts, path in _modules():
        if parts[0] == "cli":
            continue
        messages = [n for n in ast.walk(ast.parse(open(path, encoding="utf-8").read()))
                    if isinstance(n, ast.Raise) or (isinstance(n, ast.Call) and getattr(n.func, "attr", "") in (
                        "info", "warning", "error", "debug"))]
        for message in messages:
            for node in ast.walk(message):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and re.search(r"(^|[\s(])--[a-z]", node.value)):
                    offenders.append(f"{path}:{node.lineno} {node.value[:60]!r}")
    assert not offenders, offenders


def test_no_file_of_the_package_is_over_400_lines_without_a_reason():
    long = []
    for parts, path in _modules():
        text = open(path, encoding="utf-8").read()
        if text.count("\n") > 400 and "over 400 lines because" not in text:
            long.append(f"{path}: {text.count(chr(10))} lines")
    assert not long, long


@pytest.mark.slow
def test_import_mims_tf_is_fast_and_enough_to_load_a_model_with_plain_keras(tmp_path):
    code = (
        "import sys, time; t = time.perf_counter(); import mims_tf; elapsed = time.perf_counter() - t\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'import mims_tf loaded TensorFlow'\n"
        "assert elapsed < 1.0, elapsed\n"
        "import keras\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "print(type(model.optimizer).__module__, model.get_layer('fold_instances').__class__.__name__)\n"
    )
    save = (
        "import sys; from mims_tf.models import build_model; from mims_tf.train import compile_model\n"
        "model = compile_model(build_model('mims', backbone='tiny', weights=None, image_size=(16, 16)))\n"
        "model.save(sys.argv[1])\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="3")
    path = str(tmp_path / "m.keras")
    subprocess.run([sys.executable, "-c", save, path], check=True, env=env, capture_output=True)
    loaded = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-1500:]
    assert "mims_tf.train.optimizers FoldInstances" in loaded.stdout
    quiet = dict(env)
    quiet.pop("TF_CPP_MIN_LOG_LEVEL")
    loaded = subprocess.run([sys.executable, "-c", code, path], env=quiet, capture_output=True, text=True)
    assert "oneDNN" not in loaded.stderr and "absl" not in loaded.stderr, loaded.stderr  # start-up lines kept off
    loud = subprocess.run([sys.executable, "-c", code, path], env=dict(quiet, MIMS_VERBOSE="1"), capture_output=True,
                          text=True)
    assert "oneDNN" in loud.stderr  # MIMS_VERBOSE=1 brings them back


@pytest.mark.slow
def test_a_user_script_fitting_the_packages_dataset_is_quiet(tmp_path):
    script = (
        "import numpy as np, mims_tf\n"
        "from mims_tf.data import BagSource, from_rows, make_dataset\n"
        "from mims_tf.models import build_model\n"
        "from mims_tf.train import compile_model\n"
        "rows = []\n"
        "for i in range(4):\n"
        "    np.save(f'{sys.argv[1]}/v{i}.npy',"
        " np.random.default_rng(i).uniform(0, 255, (3, 16, 16)).astype('float32'))\n"
        "    rows.append({'path': f'{sys.argv[1]}/v{i}.npy', 'label': i % 2, 'split': 'train'})\n"
        "data = make_dataset(BagSource(from_rows(rows), progress=False), True, image_size=(16, 16), instances=2,"
        " batch_size=2)\n"
        "model = compile_model(build_model('mims', backbone='tiny', weights=None, image_size=(16, 16),"
        " kernels={1: 4}))\n"
        "model.fit(data, epochs=1, verbose=0)\n"
        "print('done')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", "import sys\n" + script, str(tmp_path)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]
    assert "shuffle=True" not in done.stderr and "oneDNN" not in done.stderr, done.stderr[-2000:]

"""Small helpers shared by every concern: atomic file writes, choice checks, a quiet Keras import.

Every file mims-tf writes (models, configs, manifests, tables, plots, exports) is
written to a temporary file beside its target and renamed onto it, so an
interrupted run never leaves a half-written file under the real name.
"""

import contextlib
import difflib
import json
import os
import sys


@contextlib.contextmanager
def atomic_path(path, suffix="", replace=True):
    """Yields a temporary path beside `path` and renames it onto `path` when the block succeeds.

    The temporary file is new and this call's alone (created exclusively under a random name, so a link
    planted beside `path` is never followed and two writers never share one); it gets the permissions a
    plain new file would.

    Args:
        path: the file to write.
        suffix: ending of the temporary name, for writers that choose the format
            by extension (`".keras"` for `model.save`, `".png"` for `savefig`).
        replace: replace an existing `path`; False: a `FileExistsError` instead, decided atomically (two
            writers never both succeed).

    Example:

    >>> with atomic_path("roc.png", suffix=".png") as tmp:
    ...     figure.savefig(tmp)

    On an exception the temporary file is removed and `path` is left as it was.
    """
    import tempfile

    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails where `path` exists, even a dangling link
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def file_sha256(path):
    """The SHA-256 of a file's bytes, as hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_sha256(values):
    """The SHA-256 of a JSON-able value in canonical form (sorted keys), as hex."""
    import hashlib

    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def process_temporary(path):
    """`<path>.<host>-<pid namespace>-<pid>.tmp.npy`: a temporary beside `path` that is this process's alone, so
    processes (or hosts, or containers, sharing a folder) filling one cache at once never write into each
    other's files."""
    return f"{path}.{_process_tag()}-{os.getpid()}.tmp.npy"


def remove_orphans(folder):
    """Removes the `process_temporary` files in `folder` that processes of this host and PID namespace left
    when they were killed while writing (a cached feature map can be gigabytes). Files of live processes, of
    other hosts or containers stay; nothing is removed on Windows, where `os.kill(pid, 0)` is no probe."""
    import re

    if os.name == "nt" or not os.path.isdir(folder):
        return
    pattern = r".+\." + re.escape(_process_tag()) + r"-(\d+)\.tmp\.npy"
    for name in os.listdir(folder):
        match = re.fullmatch(pattern, name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))


def _process_tag():
    """This host and PID namespace: the processes that share it see one another's process ids."""
    import socket

    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}-{namespace}"


def process_alive(pid):
    """Whether process `pid` of this PID namespace runs (POSIX: signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Opens a temporary file beside `path` (text, UTF-8, or binary with `mode="wb"`) and renames it on success."""
    kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def read_json(path, types=None):
    """The JSON object in `path`; a one-line `ValueError` naming the file where it is no valid JSON object, or
    where a key of `types` (`{key: type or tuple of types}`, `type(None)` for null) holds a value of another
    type."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); restore it or delete it") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(values).__name__}; restore it or delete it")
    for key, expected in (types or {}).items():
        value = values.get(key)
        expected = expected if isinstance(expected, tuple) else (expected,)
        if key in values and not (isinstance(value, expected) and not isinstance(value, bool)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
            raise ValueError(f"{path}: {key!r} holds {value!r}, not {names}; restore the file or delete it")
    return values


MAX_YAML_NODES = 100_000  # a config is a few hundred values; an alias bomb expands to billions


def read_yaml(path):
    """A YAML mapping from `path` (safe loader: no tags, no code); errors name the file. Aliases are counted
    as expanded, and a file that expands beyond `MAX_YAML_NODES` values (an alias bomb) is refused before it
    is built."""
    import yaml

    if not os.path.isfile(path):
        raise ValueError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise ValueError(f"{path}: expands to over {MAX_YAML_NODES:,} values through its aliases (&anchor / "
                             "*alias): not a config; write the values out")
        values = yaml.safe_load(text) or {}
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        first = str(error).splitlines()[0] if str(error) else "nested too deeply"
        raise ValueError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file is a mapping of keys to values")
    return values


def _expanded_size(node, sizes):
    """Values `node` stands for once every alias is expanded (each node counted once per reference)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = MAX_YAML_NODES + 1  # a node reached again while it is counted: a cycle
    if isinstance(node.value, list):
        children = [part for item in node.value for part in (item if isinstance(item, tuple) else (item,))]
        size = 1 + sum(_expanded_size(child, sizes) for child in children)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def write_json(path, values, replace=True):
    """Writes `values` as indented JSON to `path` atomically (`replace=False`: `FileExistsError` where it exists)."""
    with atomic_path(path, replace=replace) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2)


def did_you_mean(value, valid):
    """` Did you mean 'x'?` for the valid choice closest to `value`, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_bool(name, value):
    """Raises `ValueError` unless `value` is True or False (quoted 'false' and 'no' are text, and text is true)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be true or false (unquoted in YAML). Received: {name}={value!r}")
    return value


def is_int_in(value, minimum=1, maximum=None):
    """Whether `value` is an int (not a bool) from `minimum` to `maximum` (None: no upper bound)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum and (
        maximum is None or value <= maximum)


def check_int_in(name, value, minimum=1, maximum=None):
    """Raises `ValueError` unless `is_int_in(value, minimum, maximum)`; returns `value`.

    The message reads `` `k` must be a positive integer. Received: k=0`` (`an integer >= 0` where `minimum`
    is 0, `... and <= 4294967295` with a `maximum`).
    """
    if not is_int_in(value, minimum, maximum):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        kind += f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    return value


def check_choice(name, value, valid, what=None):
    """Raises `ValueError` naming the nearest valid choice when `value` is not one of `valid`.

    Args:
        name: the argument's name, as the caller knows it (`"pooling"`).
        value: the value received.
        valid: the allowed values.
        what: how to call the thing in the message (default: `name`), e.g. `"config key"`.

    Example:

    >>> check_choice("pooling", "topk", ("topk", "mean"))
    'topk'

    The message reads `Unknown pooling 'tpok'. Did you mean 'topk'? Valid: topk, mean. Received: pooling='tpok'`.
    """
    if value in valid:
        return value
    raise ValueError(
        f"Unknown {what or name} {value!r}.{did_you_mean(value, valid)} Valid: {', '.join(map(str, valid))}. "
        f"Received: {name}={value!r}"
    )


def new_figure(width, height, dpi=110):
    """A matplotlib `Figure` without pyplot: the caller's backend (a notebook's) is left alone."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def save_figure(figure, path):
    """Lays out `figure` and writes it as PNG to `path`, atomically."""
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp)


@contextlib.contextmanager
def stderr_muted():
    """Points file descriptor 2 at /dev/null for the block (C++ libraries write there, not to `sys.stderr`).

    Does nothing when `MIMS_VERBOSE=1`.
    """
    if os.environ.get("MIMS_VERBOSE") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras_quietly():
    """Imports Keras (and TensorFlow) with file descriptor 2 muted.

    TensorFlow 2.21 prints absl/oneDNN/CUDA lines at import whatever
    TF_CPP_MIN_LOG_LEVEL says. Set MIMS_VERBOSE=1 to see them.
    """
    with stderr_muted():
        import keras  # noqa: F401


class Progress:
    """Progress of a long loop, reported through the `mims_tf` logger with the time left.

    Each report is an INFO record `"<label>: <done>/<total>, <time> left"` carrying
    `record.progress = (label, done, total)`, at most every `interval` seconds and
    at the end; a loop done within `delay` seconds reports nothing. The command
    line draws it as a bar on a terminal and shows only the final line elsewhere.
    The library itself never prints.

    Example:

    >>> progress = Progress("reading train bags", len(bags))
    >>> for bag in bags:
    ...     read(bag)
    ...     progress.advance()
    """

    def __init__(self, label, total, interval=0.5, delay=1.0, logger=None):
        import logging
        import time

        self.label, self.total, self.done, self.interval, self.delay = label, total, 0, interval, delay
        self.logger = logger or logging.getLogger("mims_tf")
        self._clock = time.monotonic
        self._start = self._last = self._clock()

    def advance(self, steps=1):
        """Counts `steps` more done; reports when `interval` has passed or the loop is complete."""
        self.done += steps
        now = self._clock()
        if now - self._start < self.delay or (self.done < self.total and now - self._last < self.interval):
            return
        self._last = now
        elapsed = now - self._start
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        when = f"{format_seconds(left)} left" if self.done < self.total else f"done in {format_seconds(elapsed)}"
        self.logger.info("%s: %d/%d, %s", self.label, self.done, self.total, when,
                         extra={"progress": (self.label, self.done, self.total)})


def format_seconds(seconds):
    """`75.0` -> `"1 min 15 s"`; `8.2` -> `"8 s"`."""
    if seconds != seconds:  # NaN
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"

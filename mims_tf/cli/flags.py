"""The flags of `mims train`, built from the config's schema (`mims_tf.runs.config`, `ModelConfig`).

Each field with a `help` in its metadata is a flag: `--<flag or field name>` whose value goes to the config
key of that field (`data.source`, `training.epochs`, `model.k`, `seed`); its parser, choices, help and
default come from the field, so this module holds no option of its own.
"""

import argparse
import dataclasses
import functools

FORMATTER = argparse.RawDescriptionHelpFormatter


@dataclasses.dataclass(frozen=True)
class Flag:
    """A flag `--<dest>` whose value goes to the config key `key` (`block.name` or a top-level name)."""

    dest: str
    key: str
    type: object
    help: str
    choices: tuple = None


def _default_words(field, default):
    if "default_text" in field.metadata:
        return field.metadata["default_text"]
    if default is dataclasses.MISSING:
        return None
    return "none" if default is None else str(default)


def _flag(field, key, default=dataclasses.MISSING):
    """The flag of a config field (`key`: where its value goes)."""
    meta = field.metadata
    kind = meta.get("type", str)
    words = (None if kind is bool
             else _default_words(field, field.default if default is dataclasses.MISSING else default))
    return Flag(meta.get("flag", key.rsplit(".", 1)[-1]), key, kind,
                meta["help"] + (f"; default {words}" if words else ""), meta.get("choices"))


def _fields(kind, prefix=""):
    return [(f, prefix + f.name) for f in dataclasses.fields(kind) if "help" in f.metadata]


def train_flags():
    """Every flag of `mims train`, in the order `--help` shows them: task, data, model, training, decision, the rest."""
    from mims_tf.models.config import ModelConfig
    from mims_tf.runs.config import BLOCKS, MODEL_DEFAULTS, RunConfig
    from mims_tf.runs.schema import MODEL_OPTIONS

    top = {name: f for f, name in _fields(RunConfig)}
    flags = [_flag(top.pop("task"), "task")]
    flags += [_flag(f, key) for f, key in _fields(BLOCKS["data"], "data.")]
    flags += [_flag(MODEL_OPTIONS["preset"], "model.preset")]
    flags += [_flag(f, key, MODEL_DEFAULTS.get(f.name, dataclasses.MISSING))
              for f, key in _fields(ModelConfig, "model.")]
    flags += [_flag(field, "model." + key) for key, field in MODEL_OPTIONS.items() if key != "preset"]
    for block in BLOCKS:
        if block != "data":
            flags += [_flag(f, key) for f, key in _fields(BLOCKS[block], block + ".")]
    return tuple(flags + [_flag(f, name) for name, f in top.items()])


def flags_named(*dests):
    """The flags of `mims train` named `dests`, in that order (other commands share their help and parsing)."""
    flags = {flag.dest: flag for flag in train_flags()}
    return tuple(flags[dest] for dest in dests)


@functools.cache
def _argparse_type(parse):
    """`parse` for argparse (one wrapper per parser, so commands sharing a flag share its type): its `ValueError`
    becomes argparse's one-line error with the message."""
    if parse in (int, float, str):
        return parse

    def parsed(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parsed.__name__ = getattr(parse, "__name__", "value")
    return parsed


def add_flags(parser, flags):
    """Adds `flags` to `parser`; a flag not given leaves no attribute (so `--weights none`, parsed as None, is
    told apart from no `--weights`): read them with `given`."""
    for flag in flags:
        name = f"--{flag.dest.replace('_', '-')}"
        if flag.type is bool:
            parser.add_argument(name, dest=flag.dest, action="store_const", const=True, default=argparse.SUPPRESS,
                                help=flag.help)
        else:
            parser.add_argument(name, dest=flag.dest, type=_argparse_type(flag.type), default=argparse.SUPPRESS,
                                help=flag.help, choices=flag.choices)


def given(args, flags):
    """`{dest: value}` of the flags among `flags` that were given on the command line."""
    return {flag.dest: getattr(args, flag.dest) for flag in flags if hasattr(args, flag.dest)}


def build_overrides(args, flags):
    """The nested config overrides of the flags that were given (`{"data": {"source": ...}, "seed": 1}`)."""
    overrides = {}
    values = given(args, flags)
    for flag in flags:
        if flag.dest not in values:
            continue
        value = values[flag.dest]
        *path, name = flag.key.split(".")
        node = overrides
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return overrides


# Flags shared by the commands that read a run (evaluate, predict, explain, export, decide).

def add_decision_flag(parser):
    parser.add_argument("--decision", default=None, metavar="NAME",
                        help="a named decision made by `mims decide` (default: the run's own, chosen after training)")


def add_json_flag(parser):
    parser.add_argument("--json", action="store_true",
                        help="print only JSON on standard output (messages and progress go to standard error)")


def print_json(values):
    """Prints `values` as JSON on standard output (NaN as null: strict JSON that `jq` reads)."""
    import json
    import math

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    print(json.dumps(clean(values), indent=2))

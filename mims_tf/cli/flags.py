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


# The library's messages name Python arguments (`Received: batch_size=8`); the command line shows its flags.

_MESSAGE_NAMES = {"source": "data", "memory_budget_gb": "memory_budget", "rule": "threshold_rule",
                  "target": "threshold_target"}
_VALUE = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\([^()]*\)|\[[^\[\]]*\]|[^\s,;()\[\]]+(?<![.:])"""


def in_flag_terms(message, options, given=None):
    """`message` with the Python argument names of `options` (a command's flags, `--bag-pattern`) as flags.

    `name=value` becomes `--name value` (`--name` for True, `--name none` for None); `` `name` `` and a bare
    `snake_case` name become `--name` (a one-letter name only as `name=value` after `Received:`). After
    `Received:` (the values the library was given) only the values of the flags in `given` (`{dest: value}`
    given on the command line) are translated: other values came from a config file, a preset or a data set,
    and keep their names there. A message about a config file's keys is left as it is.
    """
    import ast
    import re
    import shlex

    names = {}
    for option in options:
        if option.startswith("--"):
            dest = option[2:].replace("-", "_")
            names[dest] = option
    for name, dest in _MESSAGE_NAMES.items():
        if dest in names:
            names[name] = names[dest]
    if not names:
        return message

    def literal(text):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    def from_flag(name, text):  # the value the flag gave (an int image size is a square)
        value, flag = literal(text), given[_MESSAGE_NAMES.get(name, name)]
        if value == flag or str(flag) == text:
            return True
        if isinstance(value, (tuple, list)):
            return list(value) == (list(flag) if isinstance(flag, (tuple, list)) else [flag] * len(value))
        return False

    def value_text(text, flag):
        value = literal(text)
        if value is text:
            return f"{flag} {text}"
        if value is True:
            return flag
        if value is False:
            return f"no {flag}"
        if value is None:
            return f"{flag} none"
        if isinstance(value, str):
            return f"{flag} {shlex.quote(value)}"
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{flag} {value[0]}-{value[1]}" if flag == "--instances" else (
                f"{flag} {value[0]}" if value[0] == value[1] else f"{flag} {text}")
        return f"{flag} {text}"

    def translate(text, allowed, keep=lambda name, value: False):
        alternatives = "|".join(sorted((re.escape(n) for n in names if n in allowed), key=len, reverse=True))
        if not alternatives:
            return text
        text = re.sub(rf"`({alternatives})=({_VALUE})`", lambda m: value_text(m.group(2), names[m.group(1)]), text)
        text = re.sub(rf"(?<![\w.\-`'\"])({alternatives})=({_VALUE})",
                      lambda m: m.group(0) if keep(*m.groups()) else value_text(m.group(2), names[m.group(1)]), text)
        ticked = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))  # `k` too
        text = re.sub(rf"`({ticked})`", lambda m: names[m.group(1)], text)
        return re.sub(rf"(?<![\w.\-`'\"])({alternatives})(?![\w.=\-`'\"])",
                      lambda m: names[m.group(1)] if "_" in m.group(1) else m.group(1), text)

    if "config key" in message:  # about a config file's keys: its own names
        return message
    given = given or {}
    head, marker, received = message.partition("Received:")
    given_names = {n for n in names if _MESSAGE_NAMES.get(n, n) in given}
    return (translate(head, {n for n in names if len(n) > 1}) + marker
            + (translate(received, given_names, lambda name, text: not from_flag(name, text)) if marker else ""))


def flag_terms_of(parser, args, message):
    """`in_flag_terms` for the command `args.command` of the `mims` parser."""
    if getattr(args, "config", None) and args.config in message:  # about the config file: its own key names
        return message
    command = parser._subparsers._group_actions[0].choices[args.command]
    options = [o for o in command._option_string_actions if o.startswith("--") and o != "--help"]
    given = {action.dest: getattr(args, action.dest) for action in command._actions if hasattr(args, action.dest)
             and getattr(args, action.dest) != action.default}
    return in_flag_terms(message, options, given)

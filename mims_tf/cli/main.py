"""`mims`: train, evaluate and use Multi-Instance Multi-Scale CNNs from the command line.

Every subcommand has --help with examples. Errors in the input (files, options,
config keys) are one line on stderr and exit status 2, and options are checked
before TensorFlow starts (a typo is answered in well under a second).

Each command is a module of this folder with its parser and its run function
side by side (`COMMANDS`); the flags of `mims train` come from the config's
schema (`flags.py`).
"""

import argparse
import logging
import os
import sys
import time

from mims_tf.cli.bench import analyze_parser, bench_parser, run_analyze, run_bench
from mims_tf.cli.decide import decide_parser, run_decide
from mims_tf.cli.demo import demo_parser, run_demo
from mims_tf.cli.evaluate import evaluate_parser, run_evaluate
from mims_tf.cli.explain import explain_parser, run_explain
from mims_tf.cli.export import export_parser, run_export
from mims_tf.cli.flags import FORMATTER, flag_terms_of
from mims_tf.cli.predict import predict_parser, run_predict
from mims_tf.cli.presets import presets_parser, run_presets
from mims_tf.cli.progress import ProgressHandler
from mims_tf.cli.train import run_train, train_parser

# Before TensorFlow is imported (the subcommands import it): hide its C++ info and warning lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXAMPLES = """examples:
  mims demo                                    # the whole pipeline on built-in synthetic data
  mims train --data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz --out runs/adrenal --epochs 20
  mims train --config my.yaml --resume         # continue a stopped run
  mims evaluate runs/adrenal runs/adrenal-seed1 runs/adrenal-seed2
  mims predict runs/adrenal scan1.nii.gz scan2.nii.gz --format json
  mims presets
"""


COMMANDS = {
    "demo": (demo_parser, run_demo),
    "train": (train_parser, run_train),
    "evaluate": (evaluate_parser, run_evaluate),
    "decide": (decide_parser, run_decide),
    "predict": (predict_parser, run_predict),
    "analyze": (analyze_parser, run_analyze),
    "export": (export_parser, run_export),
    "explain": (explain_parser, run_explain),
    "bench": (bench_parser, run_bench),
    "presets": (presets_parser, run_presets),
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`mims train: error: ...`) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = Parser(prog="mims", description=__doc__.split("\n\nThis module")[0], epilog=EXAMPLES,
                    formatter_class=FORMATTER)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for make_parser, run in COMMANDS.values():
        make_parser(sub).set_defaults(func=run)
    return parser


def _unknown_flags(parser, args, extras):
    """One line for flags the command does not know, with the nearest known flag."""
    from mims_tf.utils import did_you_mean

    command = parser._subparsers._group_actions[0].choices[args.command]
    known = [option for option in command._option_string_actions if option.startswith("--") and option != "--help"]
    flags = [e.split("=")[0] for e in extras if e.startswith("-")]
    hints = ""
    if flags:
        # `--lr` -> `--learning-rate`: the initials of a known flag first, then the closest spelling
        initials = [o for o in known if "".join(w[0] for w in o[2:].split("-")) == flags[0].lstrip("-")]
        hints = f" Did you mean {initials[0]!r}?" if initials else did_you_mean(flags[0], known)
    shown = " ".join(flags or extras)
    return f"mims {args.command}: error: unrecognized argument(s): {shown}.{hints} (see mims {args.command} --help)"


def _runtime_errors():
    """TensorFlow's own errors (e.g. an op that fails on a bag at run time), where TensorFlow is loaded."""
    tf = sys.modules.get("tensorflow")
    return (tf.errors.OpError,) if tf is not None and hasattr(tf, "errors") else ()


def main(argv=None):
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        print(_unknown_flags(parser, args, extras), file=sys.stderr)
        return 2
    from mims_tf.data.errors import DataError

    handler = ProgressHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("mims_tf")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        status = args.func(args)
    except (ValueError, DataError, RuntimeError, ImportError, OSError, *_runtime_errors()) as error:  # one line
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        message = flag_terms_of(parser, args, message)  # the library's Python argument names as the flags
        print(f"mims {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mims {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
    if args.command in ("train", "demo"):
        print(f"mims {args.command}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())

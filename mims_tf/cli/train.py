"""`mims train`: a run from a config file and flags (the flags come from the config's schema)."""

import json
import os
import sys

from mims_tf.cli.flags import FORMATTER, add_flags, build_overrides, given, train_flags
from mims_tf.runs.environment import disable_onednn
from mims_tf.utils import import_keras_quietly


def train_parser(sub):
    p = sub.add_parser(
        "train", help="train a model (config file and/or flags)", formatter_class=FORMATTER,
        epilog="examples:\n  mims train --data ../shared/data/adrenalmnist3d/adrenalmnist3d.npz --out runs/adrenal\n"
        "  mims train --config run.yaml --epochs 30\n  mims train --out runs/adrenal --resume\n\n"
        "A config file is YAML with a model, a data and a training block, e.g.\n"
        "  model: {preset: mims, backbone: mobilenet, weights: imagenet, kernels: crc}\n"
        "  data: {source: ../shared/data/kather-crc-msi, bag_pattern: 'TCGA-\\w\\w-\\w\\w\\w\\w',\n"
        "         classes: [MSS_JPEG, MSIMUT_JPEG], image_size: [224, 224]}\n"
        "  training: {epochs: 20, learning_rate: 0.0001}\n"
        "Flags override its keys; a run folder's config.yaml has every key.",
    )
    p.add_argument("--config", help="YAML config file; flags override its keys")
    add_flags(p, train_flags())
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--json", action="store_true",
                   help="print only the summary, as JSON, on standard output (epoch lines go to standard error)")
    return p


def run_train(args):
    from mims_tf.runs.config import load_config

    flags = train_flags()
    overrides = build_overrides(args, flags)
    if args.resume:  # the stored config; runs/fit.py says what a resume may change
        from mims_tf.runs.fit import RESUMABLE, resume_config

        out = args.out or load_config(args.config, overrides).out
        refused = sorted(f"--{f.dest.replace('_', '-')}" for f in flags
                         if f.dest in given(args, flags) and f.key not in RESUMABLE)
        if refused:
            raise ValueError(f"--resume continues the stored run; only --epochs may change. Received: "
                             f"{', '.join(refused)}")
        config = resume_config(out, overrides)
    else:
        config = load_config(args.config, overrides)
        if not _data_named(args, overrides):
            raise ValueError("no data given: name it with --data (a manifest .csv, an .npz, a folder of class "
                             "folders), or --data synthetic for the built-in synthetic set")
    source = config.data.source
    if source != "synthetic" and not os.path.exists(source):
        raise ValueError(f"{source}: data not found (--data)")
    if config.deterministic:  # oneDNN's kernels can only be turned off before TensorFlow starts
        disable_onednn()
    import_keras_quietly()  # after the options and config are checked: a typo is answered at once
    model = config.model_config(classes=2)
    check_imagenet_weights(model.backbone, model.weights, model.image_size, model.backbone_kwargs)  # before the data
    from mims_tf.cli.flags import print_json
    from mims_tf.cli.progress import EpochLines
    from mims_tf.runs.fit import train

    # Keras's progress on standard output: a bar on a terminal, a line per epoch in a log file; with --json,
    # standard output holds the summary alone and the epoch lines go to standard error
    verbose = 0 if args.json else 1 if sys.stdout.isatty() else 2
    summary = train(config, resume=args.resume, overwrite=args.overwrite, verbose=verbose,
                    callbacks=[EpochLines()] if args.json else ())
    if args.json:
        print_json(summary)
    else:
        print(json.dumps(summary, indent=2))
    return 0


def _data_named(args, overrides):
    """Whether the data was named, by --data or the config file (never the synthetic default by omission)."""
    from mims_tf.runs.config import nest_flat
    from mims_tf.utils import read_yaml

    if "source" in overrides.get("data", {}):
        return True
    return bool(args.config) and "source" in nest_flat(read_yaml(args.config), args.config).get("data", {})


def check_imagenet_weights(backbone, weights, image_size=None, backbone_kwargs=None):
    """Fails in one line, before any data is read, where a `keras.applications` backbone is to start from its
    ImageNet weights and they are neither in the Keras cache nor downloadable (offline). The backbone is built
    to find its weights file (Keras names it; a download happens here, once); the weights are not loaded."""
    from unittest import mock

    import keras

    from mims_tf.models.catalog import LOCAL_BACKBONES, resolve

    if weights != "imagenet" or not isinstance(backbone, str) or backbone.lower() in LOCAL_BACKBONES:
        return
    try:
        from keras.src.utils import file_utils  # where keras.applications fetch their weights files
    except ImportError:
        return  # another Keras layout: the run itself says what is missing
    real = file_utils.get_file

    class Found(Exception):
        pass

    class Missing(Exception):
        pass

    def locate(*args, **kwargs):
        name = kwargs.get("fname") or (args[0] if args else "the weights file")
        try:
            real(*args, **kwargs)
        except Exception:  # noqa: BLE001 - Keras's fetch failure, whatever its type
            raise Missing(name) from None
        raise Found  # found (or downloaded): the build stops before loading them

    app = resolve(backbone)
    shape = (*image_size, 3) if image_size else None
    try:
        with mock.patch.object(file_utils, "get_file", locate):
            getattr(keras.applications, app)(include_top=False, weights="imagenet", input_shape=shape,
                                             **(backbone_kwargs or {}))
    except Missing as missing:
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser(os.path.join("~", ".keras"))), "models")
        raise RuntimeError(
            f"the ImageNet weights of {app} ({missing}) are not in the Keras cache {cache} and cannot be downloaded "
            "(no network?): put the file there (or set KERAS_HOME to a folder whose models/ holds it), give "
            "--weights FILE.h5, or --weights none to train from scratch") from None
    except Exception:  # noqa: BLE001 - found, or a problem the run itself names
        return


# A library message names Python arguments (`Received: bag_pattern=None`, `pass weights=None`); the CLI shows
# them as the flags that set them. Arguments named in messages by another name than their flag:

"""`tf.distribute` strategies by name, for `fit` on one device, all devices of a host, or several workers."""

import os


def get_strategy(name="none"):
    """The `tf.distribute.Strategy` named `name`.

    Args:
        name: `"none"` (the default strategy), `"mirrored"` (every device of this host; the logical CPU
            devices where there is no GPU) or `"multi_worker"` (several hosts; needs `TF_CONFIG`).
    """
    import tensorflow as tf

    if name == "mirrored":
        if not tf.config.list_physical_devices("GPU") and len(tf.config.list_logical_devices("CPU")) > 1:
            return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs TF_CONFIG (cluster and task) in the environment")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name != "none":
        raise ValueError(f"Unknown strategy {name!r}. Valid: none, mirrored, multi_worker. Received: strategy={name!r}")
    return tf.distribute.get_strategy()

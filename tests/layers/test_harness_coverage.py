import inspect
import pathlib
import re

import keras

import mims_tf.layers


def test_every_exported_layer_goes_through_the_harness():
    sources = "\n".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    exported = {name: getattr(mims_tf.layers, name) for name in mims_tf.layers.__all__}
    layers = [name for name, obj in exported.items() if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)]
    assert len(layers) >= 10  # every class exported, so a new layer is covered too
    missing = [name for name in layers if not re.search(rf"run_layer_test\(\s*{name}\b", sources)]
    assert not missing, f"layers without a run_layer_test: {missing}"

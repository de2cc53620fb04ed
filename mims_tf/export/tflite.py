"""TFLite export (builtin ops only) from a model, verified with the LiteRT interpreter."""

import os
import tempfile

import numpy as np

from mims_tf.export.verify import verify_outputs
from mims_tf.utils import atomic_open, stderr_muted

QUANTIZATIONS = ("none", "float16", "int8")


def export_tflite(model, path, quantize="none", sample=None, tolerance=None):
    """Converts to `.tflite` (dynamic batch and instance count kept) and verifies it.

    Args:
        model: a Keras model from `build_model`; mixed precision is converted as float32.
        path: the `.tflite` file (written atomically).
        quantize: `"none"`, `"float16"` (float16 weights) or `"int8"` (dynamic-range int8 weights).
        sample: float32 bags for the check (random pixels if None).
        tolerance: largest allowed absolute difference of probabilities
            (default 1e-4 unquantised, 0.05 quantised); above it a
            `VerificationError` (see `verify_outputs`) and nothing is written.

    Returns:
        `{"path", "bytes", "max_abs_difference"}`.
    """
    import tensorflow as tf

    from mims_tf.export.saved_model import as_float32, serving_module

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}")
    _, _, height, width, channels = model.input_shape
    if height is None or width is None:
        raise ValueError("TFLite export needs a fixed image size: build the model with image_size=(H, W)")
    model = as_float32(model)
    with tempfile.TemporaryDirectory() as folder:
        module = serving_module(model)
        tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        blob = converter.convert()
    if sample is None:
        sample = np.random.default_rng(0).uniform(0, 255, (1, 3, height, width, channels))
    sample = np.asarray(sample, np.float32)
    limit = tolerance if tolerance is not None else (1e-4 if quantize == "none" else 0.05)
    difference = verify_outputs(model.predict(sample, verbose=0), run_tflite(blob, sample), limit, path)
    with atomic_open(path, "wb") as f:
        f.write(blob)
    return {"path": path, "bytes": len(blob), "max_abs_difference": difference}


def run_tflite(model, bags, num_threads=None):
    """Runs a `.tflite` file or bytes on float32 bags with the LiteRT interpreter (resizing the input).

    `num_threads` defaults to one per core (LiteRT's own default is 1, about 2x slower here).
    """
    from ai_edge_litert.interpreter import Interpreter

    threads = num_threads or os.cpu_count()
    with stderr_muted():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line (MIMS_VERBOSE=1 shows it)
        interpreter = (Interpreter(model_content=model, num_threads=threads) if isinstance(model, bytes)
                       else Interpreter(model_path=model, num_threads=threads))
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], bags.shape)
        interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], bags)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])

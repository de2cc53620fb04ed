"""Latency per bag of the Keras model, the exported SavedModel and the TFLite model, on the same input.

One `mims` model (default: ResNet-50 at 224x224, weights None, one bag of 8
instances), exported with `mims_tf.export`; each runtime is warmed up, then
timed round-robin (`--rounds` rounds, median), so machine noise hits all alike.
Keras runs `model(x)` eagerly-compiled through `predict_on_batch`; the
SavedModel its `serving_default` signature; TFLite the LiteRT interpreter
(XNNPACK, one thread per core).

    python benchmarks/export_latency.py
    python benchmarks/export_latency.py --backbone tiny --image-size 64 --rounds 20   # quick

Ends with `savedmodel_over_keras: R`, `tflite_over_keras: R` and `tflite_over_savedmodel: R`
(target: tflite_over_savedmodel <= 1).
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from _timing import interleaved_medians  # noqa: E402  (benchmarks/_timing.py)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quantize", default="none", choices=("none", "float16", "int8"), help="TFLite weights")
    args = parser.parse_args()

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from mims_tf.export import export_saved_model, export_tflite
    from mims_tf.models import build_model

    size = args.image_size
    model = build_model("mims", backbone=args.backbone, weights=None, image_size=(size, size))
    bag = np.random.default_rng(0).uniform(0, 255, (1, args.instances, size, size, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        saved = export_saved_model(model, folder, sample=bag)
        tflite = export_tflite(model, os.path.join(folder, "m.tflite"), quantize=args.quantize, sample=bag)
        serve = tf.saved_model.load(saved).signatures["serving_default"]
        interpreter = Interpreter(model_path=tflite["path"], num_threads=os.cpu_count())
        saved_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(saved) for f in fs)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], bag.shape)
        interpreter.allocate_tensors()

        def run_tflite():
            interpreter.set_tensor(inp["index"], bag)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])

        tensor = tf.constant(bag)
        runtimes = {
            "keras": lambda: model.predict_on_batch(bag),
            "savedmodel": lambda: serve(bags=tensor)["probabilities"].numpy(),
            "tflite": run_tflite,
        }
        median = interleaved_medians(runtimes, args.rounds, warmup=2, label="  ")  # warm-up: tracing, delegate set-up
    print(f"export_latency: mims {args.backbone} {size}x{size}, bag of {args.instances}, {args.rounds} rounds, "
          f"cores={os.cpu_count()}, TFLite weights {args.quantize}; SavedModel {saved_bytes / 1e6:.1f} MB, "
          f"TFLite {tflite['bytes'] / 1e6:.1f} MB")
    for name, value in median.items():
        print(f"  {name}: {value * 1000:.1f} ms per bag")
    print(f"savedmodel_over_keras: {median['savedmodel'] / median['keras']:.3f}")
    print(f"tflite_over_keras: {median['tflite'] / median['keras']:.3f}")
    print(f"tflite_over_savedmodel: {median['tflite'] / median['savedmodel']:.3f}")


if __name__ == "__main__":
    main()

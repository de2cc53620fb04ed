"""What a seed fixes on this machine, and what `--deterministic` and oneDNN cost.

Trains the same run (AdrenalMNIST3D, `mims`, tiny backbone, 28 px, the committed table's budget) in fresh
processes:

  default        twice: the same machine and code give the same weights?
  deterministic  twice (`deterministic: true`: op determinism, oneDNN off, one thread)
  oneDNN off     once (only `TF_ENABLE_ONEDNN_OPTS=0`): how far another floating-point path moves the result

and prints the wall time of each, the test AUROC, and whether the final weights are bit-identical. The
difference between `default` and `oneDNN off` is a stand-in, measurable on one machine, for what another
CPU's kernels do to a run.

    python benchmarks/determinism.py [--epochs 6]

Ends with `name: value` lines (seconds, AUROC, identical 1/0).
"""

import argparse
import concurrent.futures
import hashlib
import multiprocessing
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "adrenalmnist3d", "adrenalmnist3d.npz"))


def one_run(out, epochs, deterministic, onednn):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if not onednn:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    from mims_tf.utils import import_keras_quietly

    import_keras_quietly()
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.environment import environment, fingerprint
    from mims_tf.runs.evaluate import evaluate_run
    from mims_tf.runs.fit import train
    from mims_tf.runs.folder import RunFolder

    start = time.perf_counter()
    train(RunConfig.from_dict(dict(data=DATA, preset="mims", image_size=28, instances=8, epochs=epochs, batch_size=8,
                                   learning_rate=3e-3, kernels="crc", out=out, checkpoint_steps=10**6,
                                   deterministic=deterministic)), overwrite=True, verbose=0)
    seconds = time.perf_counter() - start
    auroc = evaluate_run(out, n_resamples=0, write=False)["auroc"]
    digest = hashlib.sha256(b"".join(w.tobytes() for w in RunFolder(out).load_model("last").get_weights())).hexdigest()
    return {"seconds": seconds, "auroc": auroc, "weights": digest[:16], "environment": fingerprint(environment())}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--work", default=os.path.join("runs", "determinism"))
    args = parser.parse_args()
    plan = [("default", False, True), ("default", False, True), ("deterministic", True, False),
            ("deterministic", True, False), ("onednn_off", False, False)]
    results = {}
    for i, (name, deterministic, onednn) in enumerate(plan):
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            result = pool.submit(one_run, os.path.join(args.work, f"{name}_{i}"), args.epochs, deterministic,
                                 onednn).result()
        results.setdefault(name, []).append(result)
        print(f"{name} (run {len(results[name])}): {result['seconds']:.1f} s, test AUROC {result['auroc']:.4f}, "
              f"weights {result['weights']} [{result['environment']}]", flush=True)
    default, det, off = results["default"], results["deterministic"], results["onednn_off"][0]
    print(f"default_seconds: {sum(r['seconds'] for r in default) / 2:.1f}")
    print(f"deterministic_seconds: {sum(r['seconds'] for r in det) / 2:.1f}")
    print(f"deterministic_over_default: {sum(r['seconds'] for r in det) / sum(r['seconds'] for r in default):.2f}")
    print(f"default_repeat_identical: {int(default[0]['weights'] == default[1]['weights'])}")
    print(f"deterministic_repeat_identical: {int(det[0]['weights'] == det[1]['weights'])}")
    print(f"default_auroc: {default[0]['auroc']:.4f}")
    print(f"deterministic_auroc: {det[0]['auroc']:.4f}")
    print(f"onednn_off_auroc: {off['auroc']:.4f}")
    print(f"onednn_off_minus_default_auroc: {off['auroc'] - default[0]['auroc']:+.4f}")
    print(f"onednn_off_same_weights_as_deterministic: {int(off['weights'] == det[0]['weights'])}")


if __name__ == "__main__":
    main()

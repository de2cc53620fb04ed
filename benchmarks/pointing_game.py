"""Do the heatmaps find the lesion? The pointing game on the synthetic set, whose lesions are known.

Writes the demo's synthetic set (`mims_tf.cli.demo.DATA`: 8-slice volumes at 64 x 64, lesions of 6 to 12 px in
1 to 3 slices of a positive bag) with the test lesions at `--test-lesion` (default: the training size, no shift),
trains one model with the tiny backbone on whole bags (the demo's settings) through `mims_tf.runs.train`,
evaluates it (`evaluate_run`: test AUROC with its bootstrap interval) and plays the pointing game
(`mims_tf.explain.pointing`) over every positive test bag: a hit when the peak of the bag's heatmap, over all
its slices, as `mims explain` computes and draws it (SmoothGrad at the backbone's input, blurred), lies inside a
planted lesion of that slice or within `--tolerance` px of one (Euclidean; default 3).

    python benchmarks/pointing_game.py                       # mims, 25 epochs: about 2 minutes on 2 CPU cores
    python benchmarks/pointing_game.py --test-lesion 4-9     # the demo's shifted test split
    python benchmarks/pointing_game.py --run runs/demo/mims --data runs/demo/data/synthetic.npz   # reuse a run

Ends with `pointing_game_hit_rate: x` and `test_auroc: y`.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def size_range(text):
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mims")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--test-lesion", type=size_range, default=None,
                        help="test lesion diameters MIN-MAX in px (default: the training size, 6-12)")
    parser.add_argument("--tolerance", type=float, default=None, help="px from a lesion still a hit (default 3)")
    parser.add_argument("--run", help="reuse this run folder instead of training (with --data)")
    parser.add_argument("--data", help="the synthetic .npz the reused run was trained on")
    parser.add_argument("--out", help="keep the set and the run here (default: a temporary folder)")
    args = parser.parse_args(argv)

    from mims_tf.utils import import_keras_quietly

    import_keras_quietly()
    from mims_tf.cli.demo import DATA, TRAIN_LESION, pointing_game_run
    from mims_tf.explain.pointing import TOLERANCE
    from mims_tf.runs import RunConfig, evaluate_run, train

    tolerance = TOLERANCE if args.tolerance is None else args.tolerance
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or scratch
        if args.run:
            if not args.data:
                parser.error("--run needs --data, the synthetic .npz holding the run's test split and its masks")
            run, data = args.run, args.data
        else:
            from mims_tf.data.synthetic import write_dataset

            test = args.test_lesion or TRAIN_LESION
            data = write_dataset(os.path.join(out, "data"), **{**DATA, "lesion_size": {
                "train": TRAIN_LESION, "val": TRAIN_LESION, "test": test}})
            run = os.path.join(out, args.preset)
            config = RunConfig.from_dict({
                "model": {"preset": args.preset, "backbone": "tiny", "weights": None},
                "data": {"source": data, "image_size": 64, "instances": DATA["instances"]},
                "training": {"batch_size": 8, "epochs": args.epochs, "learning_rate": 3e-3,
                             "checkpoint_steps": 1000},
                "out": run,
            })
            print(f"training {args.preset} ({args.epochs} epochs; test lesions {test[0]}-{test[1]} px) ...",
                  flush=True)
            train(config, overwrite=True, verbose=0)
        result = evaluate_run(run, write=False)
        game = pointing_game_run(run, data, tolerance=tolerance)
    distances = sorted(b["distance"] for b in game["per_bag"])
    inside = sum(d == 0 for d in distances)
    print(f"test AUROC {result['auroc']:.3f} ({result['auroc_low']:.3f}-{result['auroc_high']:.3f}), "
          f"{result['bags']} bags")
    print(f"pointing game: {game['hits']} of {game['bags']} positive test bags hit (peak within {tolerance:g} px "
          f"of a lesion); {inside} inside a lesion; median distance {distances[len(distances) // 2]:.1f} px")
    missed = [f"{bag} ({b['distance']:.1f} px, P {b['probability']:.2f})"
              for bag, b in zip(game["bag_ids"], game["per_bag"]) if not b["hit"]]
    print("missed: " + (", ".join(missed) if missed else "none"))
    print(f"seconds: {time.perf_counter() - started:.0f}")
    print(f"pointing_game_hit_rate: {game['hit_rate']:.3f}")
    print(f"test_auroc: {result['auroc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

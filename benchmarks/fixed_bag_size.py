"""Re-evaluates the runs of a `mims bench` table on test bags of one fixed size, beside whole bags.

Where bag size differs by class (Kather CRC-MSI: MSI patients have a median of 23 tiles, MSS 7; the
tile count alone scores test AUROC 0.85 to 0.91), whole-bag AUROC mixes what a model sees with how
many tiles a patient has. Here every val and test bag is `--instances` tiles sampled once (fixed
seed; with replacement where a patient has fewer), the size of the training bags, so bag size
carries no signal. No retraining: the run folders of the bench (`runs/bench/<table>_<dataset>...`)
are evaluated again with `mims_tf.runs.evaluate.evaluate_run(..., instances=N)`.

    mims bench table2 --dataset kather-crc-msi ...        # first: the runs (see README)
    python benchmarks/fixed_bag_size.py table2_kather-crc-msi_pretrained --instances 4

Writes `benchmarks/results/<table folder>/fixed_bags_<N>.md` and ends with one
`<preset>_fixed<N>: mean AUROC` line per preset.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mims_tf.bench.report import format_aurocs, read_results  # noqa: E402
from mims_tf.models.config import paper_name  # noqa: E402
from mims_tf.runs.evaluate import evaluate_run  # noqa: E402
from mims_tf.utils import write_text  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="results folder name under --results, e.g. table2_kather-crc-msi_pretrained")
    parser.add_argument("--instances", type=int, default=4, help="instances per val/test bag (default: 4)")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--work", default="runs/bench", help="the bench's run folders")
    args = parser.parse_args()
    rows = read_results(os.path.join(args.results, args.folder, "results.csv"))
    if not rows:
        sys.exit(f"{args.results}/{args.folder}/results.csv: no results (run the bench first)")
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    whole, fixed = {p: [] for p in presets}, {p: [] for p in presets}
    start = time.time()
    for r in rows:
        run = os.path.join(args.work, args.folder, f"{r['preset']}_s{r['seed']}")
        if not os.path.isfile(os.path.join(run, "best.keras")):
            sys.exit(f"{run}: run folder missing (rerun the bench command to recreate it)")
        result = evaluate_run(run, instances=args.instances)
        whole[r["preset"]].append(float(r["test_auroc"]))
        fixed[r["preset"]].append(result["auroc"])
        print(f"{r['preset']} seed {r['seed']}: whole bags {float(r['test_auroc']):.3f}, "
              f"{args.instances} per bag {result['auroc']:.3f}", flush=True)

    lines = [f"# {args.folder}: whole test bags against {args.instances} instances per bag",
             "", f"- command: `python benchmarks/fixed_bag_size.py {args.folder} --instances {args.instances}`",
             f"- every val and test bag sampled once to {args.instances} instances (fixed seed, with replacement "
             "where a bag is smaller); validation picks the threshold the same way; no retraining",
             f"- {len(rows)} runs re-evaluated in {(time.time() - start) / 60:.1f} min", "",
             f"| method | paper name | whole bags (the table) | {args.instances} per bag | seeds |",
             "|---|---|---|---|---|"]
    lines += [f"| `{p}` | {paper_name(p)} | {format_aurocs(whole[p])} | {format_aurocs(fixed[p])} | {len(fixed[p])} |"
              for p in presets]
    write_text(os.path.join(args.results, args.folder, f"fixed_bags_{args.instances}.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    for p in presets:
        print(f"{p}_fixed{args.instances}: {np.mean(fixed[p]):.3f}")


if __name__ == "__main__":
    main()

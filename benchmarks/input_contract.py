"""The input contract on real data: does it pass a data set's own test bags and flag every other modality?

For each shared data set (`../shared/data`, read as the package reads it: `from_medmnist` or
`from_class_folders` + `assign_splits(seed=0)`, then `BagSource` with the default normalisation, no central
crop and no resizing), builds `mims_tf.data.contract` from its train split, then checks its own test split
(in-domain: should pass) and every other data set's test split, the synthetic set (`mims_tf.data.synthetic`,
16 x 64 x 64 volumes) and the OCT reader fixtures (one B-scan per file) (out of domain: should be flagged).

    python benchmarks/input_contract.py [--data-root ../shared/data] [--max-bags N]

Ends with `indomain_flag_rate_<train>: x` and `ood_flag_rate_<train>_<other>: x` lines, one per figure
(targets: in-domain <= 0.05, out of domain >= 0.95 between different modalities).
"""

import argparse
import collections
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mims_tf.data import BagSource, assign_splits, from_class_folders, from_medmnist, read_volume  # noqa: E402
from mims_tf.data.contract import ContractBuilder, bag_features, check_features, describe_contract  # noqa: E402
from mims_tf.data.readers import readable_suffix, split_item  # noqa: E402
from mims_tf.data.source import normalize_volume  # noqa: E402
from mims_tf.data.synthetic import write_dataset  # noqa: E402

KATHER = r"TCGA-\w\w-\w\w\w\w"
KATHER_CLASSES = ["MSS_JPEG", "MSIMUT_JPEG"]
# name: (modality, how its manifest is made from the data root)
DATASETS = {
    "breastmnist": ("ultrasound", lambda root: from_medmnist(os.path.join(root, "breastmnist/breastmnist.npz"))),
    "pneumoniamnist": ("x-ray", lambda root: from_medmnist(os.path.join(root, "pneumoniamnist/pneumoniamnist.npz"))),
    "adrenalmnist3d": ("ct-mask", lambda root: from_medmnist(os.path.join(root, "adrenalmnist3d/adrenalmnist3d.npz"))),
    "adrenalmnist3d-64": ("ct-mask", lambda root: from_medmnist(
        os.path.join(root, "adrenalmnist3d/adrenalmnist3d_64.npz"))),
    "kather-crc-msi": ("h&e", lambda root: assign_splits(from_class_folders(
        os.path.join(root, "kather-crc-msi"), bag_pattern=KATHER, classes=KATHER_CLASSES), seed=0)),
    "kather-crc-msi-tiles": ("h&e", lambda root: assign_splits(from_class_folders(
        os.path.join(root, "kather-crc-msi"), one_bag_per_file=True, classes=KATHER_CLASSES), seed=0,
        group_pattern=KATHER)),
}


def split_bags(manifest, split, limit):
    """`(array, suffix)` of each bag of a split, read one at a time as training reads them (before resizing)."""
    source = BagSource(manifest, split, cache="none", progress=False)
    count = len(source) if limit is None else min(limit, len(source))
    for index in range(count):
        yield source.load(index), readable_suffix(split_item(source.bags[index].paths[0])[0])


def oct_bags(root):
    """The OCT reader fixtures as bags (normalised as `BagSource` normalises); unreadable ones are left out."""
    folder = os.path.join(root, "oct-fixtures")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".md"):
            continue
        try:
            array = read_volume(os.path.join(folder, name)).array
        except Exception as error:  # optional readers missing, or a fixture a reader refuses
            print(f"oct-fixtures: {name} left out ({type(error).__name__}: {str(error)[:80]})")
            continue
        yield normalize_volume(array, "auto"), readable_suffix(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.path.join(ROOT, "..", "shared", "data"))
    parser.add_argument("--max-bags", type=int, default=None, help="bags per split at most (default: all)")
    args = parser.parse_args()
    start = time.time()
    scratch = tempfile.mkdtemp(prefix="contract_synthetic_")
    manifests = {name: make(args.data_root) for name, (_, make) in DATASETS.items()}
    manifests["synthetic"] = from_medmnist(write_dataset(scratch, seed=0, instances=16, size=64))
    modality = {name: kind for name, (kind, _) in DATASETS.items()} | {"synthetic": "synthetic", "oct-fixtures": "oct"}

    tests = {}  # name: [(form, features, suffix)] of its test bags, computed once
    for name, manifest in manifests.items():
        tests[name] = [(*bag_features(array), suffix) for array, suffix in split_bags(manifest, "test", args.max_bags)]
    tests["oct-fixtures"] = [(*bag_features(array), suffix) for array, suffix in oct_bags(args.data_root)]
    contracts = {}
    for name, manifest in manifests.items():
        builder = ContractBuilder(normalize="auto")
        for array, suffix in split_bags(manifest, "train", args.max_bags):
            builder.add(array, suffix)
        contracts[name] = builder.build()
        print(f"{name}: {describe_contract(contracts[name])}")
    print(f"test bags: {', '.join(f'{k} {len(v)}' for k, v in tests.items())}; read in {time.time() - start:.0f} s")

    figures = []
    for train, contract in contracts.items():
        for other, bags in tests.items():
            results = [check_features(contract, form, features, suffix) for form, features, suffix in bags]
            rate = sum(bool(r) for r in results) / len(results)
            kinds = collections.Counter(reason.split(" (")[0].split(" outside")[0] for r in results for reason in r)
            common = "; ".join(f"{k} x{v}" for k, v in kinds.most_common(3))
            same = "same data" if other == train else ("same modality" if modality[other] == modality[train]
                                                       else "other modality")
            print(f"{train} -> {other} ({same}): {rate:.3f} of {len(results)} flagged; {common}")
            if other == train:
                example = next((r for r in results if r), None)
                if example:
                    print(f"  e.g. {example}")
                figures.append((f"indomain_flag_rate_{train}", rate))
            else:
                if rate < 1:
                    passed = next(i for i, r in enumerate(results) if not r)
                    print(f"  passed, e.g. test bag {passed}")
                figures.append((f"ood_flag_rate_{train}_{other}", rate))
    print(f"wall time {time.time() - start:.0f} s; bags per split: {args.max_bags or 'all'}")
    for name, value in figures:
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()

"""The paper's tables as data: which presets are rows (preset metadata), the datasets they run on here,
and the paper's own figures to print beside ours."""

from mims_tf.models.config import presets_in_table

DATASETS = {
    # name: (path under the data root, run settings of the dataset, flat `RunConfig` keys)
    "adrenalmnist3d": ("adrenalmnist3d/adrenalmnist3d.npz", {"instances": 16, "kernels": "crc"}),
    # The same volumes at 64^3: 64 axial slices, room for the paper's OCT protocol (central 30, 12 to 18 sampled).
    "adrenalmnist3d-64": ("adrenalmnist3d/adrenalmnist3d_64.npz", {"instances": 16, "kernels": "crc"}),
    # Kather's tiles come with no patient-level split of our own: each run is 5 patient-grouped folds over the
    # train and val patients (`mims_tf.runs.cv`): its validation AUROC is out of fold, its model the fold ensemble.
    "kather-crc-msi": ("kather-crc-msi", {
        "bag_pattern": r"TCGA-\w\w-\w\w\w\w", "classes": ["MSS_JPEG", "MSIMUT_JPEG"], "instances": 8, "kernels": "crc",
        "folds": 5,
    }),
    # The paper's CRC-MSI task: tiles classified one by one (a tile is a bag of one image), split by patient.
    "kather-crc-msi-tiles": ("kather-crc-msi", {
        "one_bag_per_file": True, "group_pattern": r"TCGA-\w\w-\w\w\w\w", "classes": ["MSS_JPEG", "MSIMUT_JPEG"],
        "instances": 1, "kernels": "crc", "folds": 5,
    }),
    "breastmnist": ("breastmnist/breastmnist.npz", {"instances": 1, "kernels": "crc"}),
    "pneumoniamnist": ("pneumoniamnist/pneumoniamnist.npz", {"instances": 1, "kernels": "crc"}),
}
TABLES = {"table1": presets_in_table("table1"), "table2": presets_in_table("table2")}
# The paper's AUROC (ResNet-101 pretrained on ImageNet, private data), same row order; None: not reported.
PAPER = {
    "table1": (("Cirrus", "Spectralis", "MMD", "CRC-MSI", "Avg."), {
        "mi_pre": (0.574, 0.906, 0.956, 0.880, 0.829),
        "pyramid_mi_pre": (0.638, 0.371, 0.965, 0.855, 0.707),
        "mi_pre_conv": (0.972, 0.990, 0.961, 0.870, 0.948),
        "mims_noresizing": (0.956, 0.975, 0.961, 0.879, 0.942),
        "pyramid_mims": (0.848, 0.881, 0.966, 0.673, 0.842),
        "mi_pre_trident": (0.930, 1.000, 0.966, 0.897, 0.948),
        "si_cnn": (0.983, 1.000, 0.972, 0.880, 0.959),
        "featpyra_45": (0.959, 0.991, 0.970, 0.888, 0.952),
        "resnet34_scratch": (0.699, 0.734, 0.824, 0.667, 0.731),
        "mims": (0.986, 1.000, 0.972, 0.901, 0.965),
        "mims_patchcls": (0.874, 0.722, None, None, None),
        "mi_pre_conv_patchcls": (0.764, 0.227, None, None, None),
    }),
    "table2": (("Cirrus",), {
        "mims_mean": (0.829,), "mims_max": (0.960,), "mims_maxinst": (0.975,), "mims_top2": (0.980,),
        "mims_top3": (0.980,), "mims_top4": (0.986,), "mims_top5": (0.986,),
    }),
}

"""Which heatmap method should `mims explain` use by default? Measured on synthetic lesions and looked at on real
images.

Methods (`mims_tf.explain.heatmap.contributions`):
    gradxinput   gradient x input at the backbone's input (pixel level), the old default
    smoothgrad   the same, averaged over 16 noisy copies (noise sigma 15 % of the input's range)
    smoothgrad10 the same with sigma 10 %
    feature      gradient x input at `head_ms_conv`'s input (the backbone's feature maps), upsampled bicubically

(a) Synthetic: a tiny-backbone `mims` model trained for a few epochs on `mims_tf.data.synthetic` volumes with
    lesion masks (as tests/explain/test_heatmap.py). On every positive test bag, the slice with the largest
    summed contribution is taken; `peak_in_lesion` counts the bags whose heatmap maximum lies inside a lesion of
    that slice, `peak_near_lesion` within 4 px of one (the test's criterion), `mass_in_lesion` is the mean share
    of the slice's positive heat inside the lesion masks (1.0: nothing outside; speckle lowers it).
(b) Real images: briefly trained models on kather-crc-msi tiles (MobileNet alpha 0.25, the ImageNet weights in
    ../shared/weights), breastmnist and pneumoniamnist (tiny backbone, 28 px upsampled to 64). Writes one PNG
    per dataset with the image and the four methods side by side, plus `explain_bag`'s output for one kather bag.
    `roughness_<data>_<method>` is the mean absolute difference between neighbouring pixels of the map scaled to
    its peak, over the mean of the map: high for speckle, low for smooth blobs (no ground truth: a descriptor).

    python benchmarks/heatmaps.py --out benchmarks/results/heatmaps    # about 3 minutes on 2 CPU cores

Ends with `name: value` lines.
"""

import argparse
import glob
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from mims_tf.data.synthetic import write_dataset  # noqa: E402
from mims_tf.explain.heatmap import BLUR, contributions, explain_bag, heatmaps, overlay  # noqa: E402
from mims_tf.models import build_model  # noqa: E402
from mims_tf.train import compile_model  # noqa: E402
from mims_tf.utils import new_figure, save_figure  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
WEIGHTS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "weights", "mobilenet_2_5_224_tf_no_top.h5")
METHODS = {  # contributions() options, heatmaps() blur
    "gradxinput": (dict(layer_name="backbone", method="gradient_x_input"), 0.0),
    "gradxinput_blur": (dict(layer_name="backbone", method="gradient_x_input"), BLUR),
    "smoothgrad": (dict(layer_name="backbone", method="smoothgrad", noise=0.15), 0.0),
    "smoothgrad_blur": (dict(layer_name="backbone", method="smoothgrad", noise=0.15), BLUR),
    "smoothgrad10_blur": (dict(layer_name="backbone", method="smoothgrad", noise=0.10), BLUR),
    "feature": (dict(layer_name="head_ms_conv", method="gradient_x_input"), 0.0),
}


FIGURE_METHODS = ("gradxinput", "gradxinput_blur", "smoothgrad_blur", "feature")


def rgb(images):
    return np.repeat(np.asarray(images, np.float32)[..., None], 3, axis=-1)


def fit(model, bags, labels, epochs, batch_size=8, learning_rate=3e-3):
    compile_model(model, learning_rate=learning_rate)
    model.fit(bags, labels, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return model


def synthetic(epochs, folder):
    path = write_dataset(folder, seed=0, instances=16, size=64, contrast=0.25, lesion_size=(6, 12),
                         splits=(("train", 96), ("test", 32)))
    data = np.load(path)
    keras.utils.set_random_seed(0)
    model = build_model("mims", backbone="tiny", weights=None, image_size=(64, 64))
    fit(model, rgb(data["train_images"]), data["train_labels"][:, 0], epochs)
    auroc = roc_auc_score(data["test_labels"][:, 0], model.predict(rgb(data["test_images"]), verbose=0)[:, 1])
    from scipy.ndimage import binary_dilation

    images, labels, masks = data["test_images"], data["test_labels"][:, 0], data["test_masks"]
    results = {}
    for method, (options, blur) in METHODS.items():
        inside, near, mass = [], [], []
        for i in np.flatnonzero(labels):
            t, _ = contributions(model, rgb(images[i])[None], class_index=1, **options)
            top = int(np.argmax(np.maximum(t, 0).sum(axis=(1, 2))))
            heat = heatmaps(t, images.shape[2:4], blur=blur)[top].astype(np.float64)
            y, x = np.unravel_index(np.argmax(heat), heat.shape)
            inside.append(bool(masks[i, top][y, x]))
            near.append(bool(binary_dilation(masks[i, top], iterations=4)[y, x]))
            mass.append(heat[masks[i, top]].sum() / max(heat.sum(), 1e-9))
        results[method] = (np.mean(inside), np.mean(near), np.mean(mass), len(inside))
    return results, auroc


def roughness(t, size, blur):
    heat = heatmaps(t, size, blur=blur).astype(np.float64) / 255.0
    steps = np.abs(np.diff(heat, axis=-1)).mean() + np.abs(np.diff(heat, axis=-2)).mean()
    return float(steps / max(heat.mean(), 1e-9))


def compare_figure(path, image, maps, title):
    """The image and each method's overlay side by side."""
    figure = new_figure(2.4 * (len(maps) + 1), 2.7, dpi=100)
    axes = figure.subplots(1, len(maps) + 1)
    grey = image.mean(axis=-1)
    axes[0].imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
    axes[0].set_title("image", fontsize=8)
    for axis, (method, heat) in zip(axes[1:], maps.items()):
        axis.imshow(overlay(image, heat), interpolation="bilinear")
        axis.set_title(method, fontsize=8)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(title, fontsize=8)
    save_figure(figure, path)


def kather(size=128, per_class=36, tiles=4):
    """Bags of `tiles` tiles of `per_class` MSI and MSS patients each, resized to `size`."""
    from PIL import Image

    rng = np.random.default_rng(0)
    bags, labels, names = [], [], []
    for label, folder in enumerate(("MSS_JPEG", "MSIMUT_JPEG")):
        patients = {}
        for file in sorted(glob.glob(os.path.join(DATA, "kather-crc-msi", folder, "*.jpg"))):
            patients.setdefault(re.search(r"TCGA-\w\w-\w{4}", file).group(0), []).append(file)
        chosen = [p for p in sorted(patients) if len(patients[p]) >= tiles]
        for patient in rng.permutation(chosen)[:per_class]:
            files = rng.choice(patients[patient], tiles, replace=False)
            bags.append([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files])
            labels.append(label)
            names.append(patient)
    return np.asarray(bags, np.float32), np.asarray(labels), names


def medmnist(name, count, size=64):
    import tensorflow as tf

    data = np.load(os.path.join(DATA, name, f"{name}.npz"))
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(data["train_images"]))[:count]
    resize = lambda x: tf.image.resize(rgb(x), (size, size), method="bilinear").numpy()[:, None]  # noqa: E731
    return (resize(data["train_images"][pick]), data["train_labels"].reshape(-1)[pick],
            resize(data["test_images"]), data["test_labels"].reshape(-1))


def real(args, out):
    rows = {}
    cases = []
    bags, labels, names = kather()
    keras.utils.set_random_seed(0)
    model = build_model("mims", backbone="mobilenet", weights=os.path.abspath(WEIGHTS), backbone_kwargs={"alpha": 0.25},
                        image_size=(128, 128), kernels="crc")
    train = np.arange(len(bags)) % 6 != 0
    fit(model, bags[train], labels[train], args.real_epochs, batch_size=4, learning_rate=1e-3)
    rows["auroc_kather"] = roc_auc_score(labels[~train], model.predict(bags[~train], verbose=0)[:, 1])
    test = np.flatnonzero(~train & (labels == 1))[0]
    cases.append(("kather", model, bags[test][None], 1, f"kather-crc-msi patient {names[test]} (MSI)"))
    for name, label, count in (("breastmnist", 0, 546), ("pneumoniamnist", 1, 800)):
        x, y, tx, ty = medmnist(name, count)
        keras.utils.set_random_seed(0)
        model = build_model("mims", backbone="tiny", weights=None, image_size=(64, 64), kernels="crc")
        fit(model, x, y, args.real_epochs * 2, batch_size=16)
        rows[f"auroc_{name}"] = roc_auc_score(ty == label, model.predict(tx, verbose=0)[:, label])
        probs = model.predict(tx[:64], verbose=0)[:, label]
        case = int(np.argmax(np.where(ty[:64] == label, probs, -1)))
        cases.append((name, model, tx[case][None], label, f"{name} test image {case} (class {label})"))
        if name == "breastmnist":  # the image the model finds least malignant: weak evidence, drawn pale
            weak = (model, tx[int(np.argmin(probs))][None])
    for name, model, bag, label, title in cases:
        maps = {m: contributions(model, bag, class_index=label, **options) for m, (options, _) in METHODS.items()}
        probs = maps["smoothgrad"][1]
        top = int(np.argmax(np.maximum(maps["smoothgrad"][0], 0).sum(axis=(1, 2))))  # one tile for all methods
        shown = {}
        for method, (t, _) in maps.items():
            blur = METHODS[method][1]
            if method in FIGURE_METHODS:
                shown[method] = heatmaps(t, bag.shape[2:4], blur=blur)[top]
            rows[f"roughness_{name}_{method}"] = roughness(t[top:top + 1], bag.shape[2:4], blur)
        compare_figure(os.path.join(out, f"compare_{name}.png"), bag[0, top], shown,
                       f"{title}, P(class {label}) = {probs[label]:.2f}; colour scaled to each map's peak")
    name, model, bag, label, _ = cases[0]
    explain_bag(model, bag, os.path.join(out, "explain_kather"), class_index=label, slices=1, name="kather",
                class_name="MSI")
    explain_bag(weak[0], weak[1], os.path.join(out, "explain_breastmnist_weak"), class_index=0, slices=1,
                name="breastmnist_weak", class_name="malignant")
    for path in glob.glob(os.path.join(out, "**", "*.png"), recursive=True):
        shrink(path)
    return rows


def shrink(path):
    """256 colours: the documentation figures stay under 300 KB."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/heatmaps")
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 15],
                        help="synthetic training epochs; the first gives the unsuffixed figures (test AUROC: 0.996 "
                        "at 30; at 15 the test probabilities have collapsed, AUROC 0.50: a poorly trained model)")
    parser.add_argument("--real-epochs", type=int, default=3, help="kather epochs (MedMNIST: twice as many)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    synthetic_rows = {}
    for epochs in args.epochs:
        with tempfile.TemporaryDirectory() as folder:
            results, auroc = synthetic(epochs, folder)
        print(f"synthetic: {epochs} epochs, tiny backbone, test AUROC {auroc:.3f}; "
              f"positive test bags: {next(iter(results.values()))[3]}")
        print(f"{'method':<20}{'peak in lesion':>16}{'within 4 px':>13}{'heat mass in lesion':>21}")
        suffix = "" if epochs == args.epochs[0] else f"_{epochs}ep"
        synthetic_rows[f"synthetic_auroc{suffix}"] = auroc
        for method, (inside, near, mass, _) in results.items():
            print(f"{method:<20}{inside:>16.2f}{near:>13.2f}{mass:>21.3f}")
            synthetic_rows.update({f"peak_in_lesion_{method}{suffix}": inside,
                                   f"peak_near_lesion_{method}{suffix}": near,
                                   f"mass_in_lesion_{method}{suffix}": mass})
    rows = real(args, args.out)
    print(f"elapsed: {time.perf_counter() - start:.0f} s")
    for key, value in synthetic_rows.items():
        print(f"{key}: {value:.3f}")
    for key, value in rows.items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()

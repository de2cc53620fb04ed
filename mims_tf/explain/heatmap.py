"""Supplement C: heatmaps that show which slices and regions drove a decision, for a reader.

For a bag and a class c, at a chosen layer l with input X (by default the backbone's input, i.e. pixel resolution;
`head_ms_conv` gives the backbone's feature maps, the paper's kind of layer; see `DEFAULT_LAYER`), gradient x input
is

    T[s, h, w] = sum_i  d score_c / d X[s, h, w, i]  *  X[s, h, w, i]

and SmoothGrad (Smilkov et al. 2017; the default, see `DEFAULT_METHOD`) averages it over `samples` noisy copies X +
N(0, sigma^2), sigma = `noise` x the range of X over the bag, which removes most of the pixel-level speckle of
plain gradient x input.

Colour scale (`heatmaps`): negative values are set to 0 and the map is shown as `P(c) x T / max(T over the bag)`,
from 0 to 1: the bag's strongest region gets the model's probability of the explained class, so a bag the model
finds negative is drawn pale instead of with a confident spot, and slices of one bag stay comparable. Overlays
blend the colour (`COLORMAP`, "greens": dark green to pale cyan, lightness growing with the value; no pink, purple
or orange, so it stands apart from H&E stain as well as from grey CT or MRI) over the image with an opacity that
grows with the value, so weak evidence leaves the image as it is, and draw a contour line (`CONTOUR_COLOUR`, cyan)
around the region above half the bag's peak. The reference panel shows a colour image in colour. `explain_bag`
ranks the slices by their summed contribution and writes a figure per chosen slice, `index.md` and a contact sheet
`index.png` of the top slices; each slice is named by its file where the bag was read from files (`slice_names`,
`instance_names`). How often the peak falls on the lesion: `mims_tf.explain.pointing`.
"""

import os

import numpy as np

from mims_tf.utils import check_choice, new_figure, save_figure, write_text

METHODS = ("smoothgrad", "gradient_x_input")
# Dark green -> green -> pale cyan, lightness rising with the value. Not "inferno" (black, purple, orange): its
# purple and orange could not be told from haematoxylin and eosin on histology tiles.
COLORMAP = "greens"
COLORMAP_COLOURS = ((0.0, 0.20, 0.10), (0.0, 0.55, 0.25), (0.15, 0.85, 0.45), (0.75, 1.0, 0.95))
CONTOUR_COLOUR = "#00ffff"  # the line around the region above half the bag's peak
CONTOUR_LEVEL = 0.5
BLUR = 0.03  # heatmaps are smoothed with sigma 3 % of the map side (2 px at 64, 7 px at 224)
SCALE_LABEL = "P(explained class) x contribution / bag's peak"
SMOOTHGRAD_INSTANCES = 128  # SmoothGrad's noisy copies share a gradient pass up to this many instances


def feature_layers(model):
    """Names of the top-level layers whose (first) input is a 4-D feature map `(N, h, w, c)`."""
    names = []
    for layer in model.layers:
        try:
            tensor = _first_input(layer)
        except (AttributeError, ValueError, IndexError):
            continue
        if tensor is not None and len(tensor.shape) == 4 and layer.name != "backbone":
            names.append(layer.name)
    return ["backbone", *names]


def _first_input(layer):
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return None
    tensors = nodes[0].input_tensors
    return tensors[0] if isinstance(tensors, (list, tuple)) else tensors


# The layer explained by default: the backbone's input (pixel resolution); see `benchmarks/results/heatmaps/`.
# On the synthetic set the pixel-level peak fell inside the planted lesion in 15 of 16 positive test bags,
# against 2 of 16 at the backbone's 8x8 feature maps (`"head_ms_conv"`, the paper's kind of layer), whose
# peaks are only as precise as one feature cell.
DEFAULT_LAYER = "backbone"
# The method by default: SmoothGrad (16 noisy copies, sigma 15 %), drawn with `BLUR`; see
# `benchmarks/results/heatmaps/`. Synthetic lesions, peak inside the lesion: 15 of 16 bags for SmoothGrad and
# plain gradient x input (16 with blur) on a well-trained model; 16 against 10 on a poorly trained one. On real
# X-ray and ultrasound images SmoothGrad gives fewer, more coherent regions. It costs `samples` gradient passes.
DEFAULT_METHOD = "smoothgrad"


def contributions(model, bag, layer_name=None, class_index=1, method=None, samples=16, noise=0.15, seed=0):
    """Returns `(T, probabilities)`: T `(S, h, w)` is the contribution map of every instance.

    Args:
        model: a model from `build_model` (or loaded from a run).
        bag: float32 `(1, S, H, W, C)`.
        layer_name: a name from `feature_layers(model)`; default `DEFAULT_LAYER`.
        class_index: the class whose score is explained.
        method: `"smoothgrad"` or `"gradient_x_input"`; default `DEFAULT_METHOD`.
        samples: SmoothGrad's number of noisy copies.
        noise: SmoothGrad's noise standard deviation, as a share of the layer input's range over the bag.
        seed: SmoothGrad's noise seed (the same seed gives the same map).

    Returns:
        `(T, probabilities)`: float32 `(S, h, w)` and the model's class probabilities `(classes,)` for the bag.
    """
    import keras
    import tensorflow as tf

    classes = model.output_shape[-1]
    if not 0 <= class_index < classes:
        raise ValueError(f"class index {class_index} is out of range for {classes} classes. "
                         f"Received: class_index={class_index}")
    method = check_choice("method", method or DEFAULT_METHOD, METHODS)
    if method == "smoothgrad" and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
        raise ValueError(f"`samples` must be a positive integer. Received: samples={samples!r}")
    if method == "smoothgrad" and not 0 <= noise < float("inf"):
        raise ValueError(f"`noise` must be a non-negative share of the input's range. Received: noise={noise!r}")
    valid = feature_layers(model)
    layer_name = layer_name or DEFAULT_LAYER
    if layer_name not in valid:
        raise ValueError(f"no feature layer {layer_name!r}; valid: {', '.join(valid)}")
    watched = _first_input(model.get_layer(layer_name))
    # Split the graph at the watched tensor: head(features, bags) is the rest of the model.
    features_model = keras.Model(model.inputs, watched)
    head = keras.Model([watched, *model.inputs], model.output)
    bag = tf.constant(bag)
    features = features_model(bag, training=False).numpy()
    probs = head([tf.constant(features), bag], training=False).numpy()[0]
    if method == "gradient_x_input":
        return gradient_x_input(head, features, bag, class_index), probs
    sigma = noise * float(features.max() - features.min())
    rng = np.random.default_rng(seed)
    total = np.zeros(features.shape[:-1], np.float32)
    # Several noisy copies per gradient pass (each a bag of its own; at most SMOOTHGRAD_INSTANCES instances
    # a pass): the same noise, drawn in the same order, as one copy a pass, in a third of the time on a CPU.
    per_pass = max(1, SMOOTHGRAD_INSTANCES // (bag.shape[0] * bag.shape[1]))
    done = 0
    while done < samples:
        count = min(per_pass, samples - done)
        noisy = [(features + rng.normal(0.0, sigma, features.shape)).astype(np.float32) for _ in range(count)]
        maps = gradient_x_input(head, np.concatenate(noisy), tf.concat([bag] * count, axis=0), class_index)
        total += maps.reshape((count, *total.shape)).sum(axis=0)
        done += count
    return total / samples, probs


def gradient_x_input(head, features, bag, class_index):
    """`sum_i d head(features, bag)[0, class_index] / d features[..., i] * features[..., i]` as numpy `(S, h, w)`.

    For a batch of bags (copies of one bag, SmoothGrad's), each bag's score is summed: bags do not interact,
    so each copy's rows get its own gradient."""
    import tensorflow as tf

    features = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(features)
        score = tf.reduce_sum(head([features, bag], training=False)[:, class_index])
    return tf.reduce_sum(tape.gradient(score, features) * features, axis=-1).numpy()


def heatmaps(t, size, probability=1.0, blur=0.0):
    """`T (S, h, w)` -> uint8 heatmaps `(S, H, W)`: `probability x T / max(T)` (negatives 0) as 0..255, resized.

    Args:
        t: contribution maps of one bag.
        size: `(H, W)` of the images.
        probability: the model's probability of the explained class for the bag: the bag's peak gets it,
            so weak evidence is drawn pale (1.0: the peak gets full colour).
        blur: Gaussian smoothing of each map before scaling, sigma as a share of the map's longer side
            (`BLUR` in `explain_bag`: pixel-level maps are single bright pixels otherwise; 0: none).

    Returns:
        uint8 `(S, H, W)`; maps smaller than `size` are upsampled bicubically (clipped to 0..255).
    """
    import tensorflow as tf
    from scipy.ndimage import gaussian_filter

    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"`probability` must be in [0, 1]. Received: probability={probability!r}")
    positive = np.maximum(np.asarray(t, np.float32), 0.0)
    if blur > 0:
        positive = gaussian_filter(positive, sigma=(0, blur * max(t.shape[1:]), blur * max(t.shape[1:])))
    peak = positive.max()
    scaled = positive / peak * 255.0 * probability if peak > 0 else positive
    resized = tf.image.resize(scaled[..., None].astype(np.float32), size, method="bicubic").numpy()[..., 0]
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def colour_map(name=COLORMAP):
    """The matplotlib colour map `name`; `COLORMAP` ("greens") is this module's own (`COLORMAP_COLOURS`)."""
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    if name == COLORMAP:
        return LinearSegmentedColormap.from_list(COLORMAP, COLORMAP_COLOURS)
    return colormaps[name]


def overlay(image, heatmap, colormap=COLORMAP, opacity=0.7):
    """The colour of `heatmap` blended over `image` with opacity `opacity x heatmap / 255`, as uint8 RGB.

    Args:
        image: `(H, W)` or `(H, W, 3)` in 0..255.
        heatmap: uint8 `(H, W)` from `heatmaps`.
        colormap: a colour map name (`colour_map`; default `COLORMAP`).
        opacity: the opacity at 255; at 0 the image shows unchanged.

    Returns:
        uint8 `(H, W, 3)`.
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
    value = np.asarray(heatmap, np.float32)[..., None] / 255.0
    colour = colour_map(colormap)(value[..., 0])[..., :3] * 255.0
    alpha = opacity * value
    return np.clip((1.0 - alpha) * image + alpha * colour, 0, 255).astype(np.uint8)


def instance_names(path):
    """The file name of each instance of a bag read from `path`, in the order the reader stacks them, where
    that order is the files' own: a folder of images (sorted naturally, as `mims_tf.data.readers` reads it).
    None for one file (a volume's slices have no names) and for a DICOM folder (ordered by slice position)."""
    import os

    from mims_tf.data.readers import IMAGE_SUFFIXES, TIFF_SUFFIXES, natural_key

    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    names = [f for f in sorted(os.listdir(path), key=natural_key)
             if not f.startswith(".") and os.path.isfile(os.path.join(path, f))]
    if any(f.lower().endswith(".dcm") for f in names):
        return None
    return [f for f in names if f.lower().endswith(IMAGE_SUFFIXES + TIFF_SUFFIXES)] or None


def slice_label(s, slice_names=None):
    """`"slice 3"`, or `"slice 3 (tile_0042.png)"` where the slice's file is known."""
    return f"slice {s}" + (f" ({slice_names[s]})" if slice_names is not None else "")


def explain_bag(model, bag, out_dir, layer_name=None, class_index=1, slices=3, name="bag", prediction=None,
                class_name=None, method=None, sheet=8, slice_names=None):
    """Ranks the slices of one bag; writes a figure per top slice, `index.md` and `index.png`; returns the ranking.

    Each figure shows the slice (upsampled to at least 256 px on its long side) beside its overlay, with a
    colour bar of `P(explained class) x contribution / the bag's peak` (see `heatmaps`), and is titled with the
    slice, its contribution, the model's decision (`prediction`) and, separately, the class being explained.
    `index.png` is a contact sheet of the top `max(slices, sheet)` slices side by side (rank, slice, contribution).

    Args:
        model: a model from `build_model` (or loaded from a run), or a list of them (an ensemble: their mean).
        bag: float32 `(1, S, H, W, C)`.
        out_dir: folder of the figures, `index.md` and `index.png`.
        layer_name: a name from `feature_layers(model)`; default `DEFAULT_LAYER`.
        class_index: the class whose score is explained.
        slices: figures for the top N slices.
        name: file name prefix and title.
        prediction: a line saying what the model decided, e.g. `"predicted: 1 (P(1) = 0.83, threshold
            0.42)"`; default: the model's probability of `class_index`.
        class_name: the explained class's name (default: its index).
        method: `"smoothgrad"` or `"gradient_x_input"`; default `DEFAULT_METHOD`.
        sheet: the contact sheet shows at least this many top slices (as many as the bag has, at most).
        slice_names: the file of each slice (e.g. the tiles of a folder, `instance_names`), shown beside its
            index in every title, the index and the contact sheet; None: slices are named by index only.

    Returns:
        A list of `(slice_index, contribution, png_path)` for the written slices, best first.
    """
    for key, value in (("slices", slices), ("sheet", sheet)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{key}` must be a positive integer. Received: {key}={value!r}")
    if slice_names is not None:
        slice_names = [str(n) for n in slice_names]
        if len(slice_names) != bag.shape[1]:
            raise ValueError(f"`slice_names` needs one name per slice: {bag.shape[1]} slices. "
                             f"Received: {len(slice_names)} names")
    method = method or DEFAULT_METHOD
    members = model if isinstance(model, (list, tuple)) else [model]  # an ensemble: the mean of its members'
    explained_maps = [contributions(member, bag, layer_name, class_index, method=method) for member in members]
    t, probs = (np.mean(part, axis=0) for part in zip(*explained_maps))
    label = class_name if class_name is not None else class_index
    explained = f"explained: class {label}"
    prediction = prediction or f"P(class {class_index}) = {probs[class_index]:.4f}"
    scores = np.maximum(t, 0).sum(axis=(1, 2))
    order = np.argsort(-scores, kind="stable")
    maps = heatmaps(t, bag.shape[2:4], probability=float(probs[class_index]), blur=BLUR)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for s in order[:slices]:
        path = os.path.join(out_dir, f"{name}_slice{int(s):03d}.png")
        title = (f"{name}, {slice_label(int(s), slice_names)}: contribution {scores[s]:.4g}\n{prediction} | "
                 f"{explained}")
        _figure(path, bag[0, s], maps[s], title, f"P({label}) x contribution / bag's peak", level=_level(maps))
        written.append((int(s), float(scores[s]), path))
    ranked = [(int(s), float(scores[s])) for s in order[:max(slices, sheet)]]
    contact_sheet(os.path.join(out_dir, "index.png"), bag[0], maps, ranked, f"{name}: {prediction} | {explained}",
                  slice_names=slice_names)
    _index(out_dir, name, prediction, explained, layer_name or DEFAULT_LAYER, method, written, slice_names)
    return written


def _level(maps):
    """The contour level: half the bag's peak (None where the bag has no positive evidence)."""
    peak = int(np.max(maps))
    return CONTOUR_LEVEL * peak if peak > 1 else None


def _index(out_dir, name, prediction, explained, layer_name, method, written, slice_names=None):
    lines = [
        f"# {name}: {prediction}",
        "",
        f"{explained.capitalize()}. {method.replace('_', ' ')} at layer `{layer_name}` (supplement C); colour map "
        f"{COLORMAP} (dark green low, pale cyan high), blended over the image with an opacity that grows with the "
        f"value; the cyan line encloses the region above half the bag's peak. Colour = {SCALE_LABEL}: a bag the "
        "model finds unlikely to be of this class is drawn pale.",
        "",
        "![top slices](index.png)",
        "",
        f"| rank | slice |{' file |' if slice_names else ''} contribution | figure |",
        "|---|---|---|---|" + ("---|" if slice_names else ""),
    ]
    lines += [f"| {r} | {s} |{f' {slice_names[s]} |' if slice_names else ''} {c:.4g} | "
              f"![{slice_label(s, slice_names)}]({os.path.basename(p)}) |" for r, (s, c, p) in enumerate(written, 1)]
    write_text(os.path.join(out_dir, "index.md"), "\n".join(lines) + "\n")


def _colour_bar(figure, label, axes=None, cax=None):
    import matplotlib.cm
    import matplotlib.colors

    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=colour_map())
    bar = figure.colorbar(mappable, ax=axes, cax=cax, fraction=0.046, pad=0.04)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)


def is_colour(image):
    """Whether an `(H, W, C)` image has colour (channels that differ), not grey stored as RGB."""
    image = np.asarray(image)
    return image.ndim == 3 and image.shape[-1] >= 3 and not (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]))


def _show_image(axis, image):
    """The slice as it is: in colour where it has colour, else grey (0..255)."""
    if is_colour(image):
        axis.imshow(np.clip(image[..., :3], 0, 255).astype(np.uint8), interpolation="bilinear")
        return
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    axis.imshow(grey, cmap="gray", vmin=0, vmax=max(255.0, float(grey.max())), interpolation="bilinear")


def _contour(axis, heatmap, level):
    """The cyan line around the region above `level` (half the bag's peak); nothing where none is."""
    if level is not None and np.asarray(heatmap).max() > level:
        axis.contour(np.asarray(heatmap, np.float32), levels=[level], colors=CONTOUR_COLOUR, linewidths=1.0)


def _figure(path, image, heatmap, title, label=SCALE_LABEL, level=None):
    """The slice beside its overlay (with its contour at `level`), a colour bar, a title; at least 256 px per
    panel."""
    image = np.asarray(image, np.float32)
    figure = new_figure(6.4, 3.6, dpi=100)
    axes = figure.subplots(1, 2)
    _show_image(axes[0], image)
    axes[0].set_title("slice", fontsize=8)
    axes[1].imshow(overlay(image, heatmap), interpolation="bilinear")
    _contour(axes[1], heatmap, level)
    axes[1].set_title("contribution overlay", fontsize=8)
    for axis in axes:
        axis.axis("off")
    _colour_bar(figure, label, axes=axes[1])
    figure.suptitle(title, fontsize=8)
    save_figure(figure, path)


SHEET_PANEL = (2.9, 3.3)  # inches per slice at 100 dpi: images of about 270 px
SHEET_BAR = 0.9  # inches for the colour bar


def contact_sheet(path, images, maps, ranked, title, slice_names=None):
    """Writes the ranked slices' overlays side by side, each titled with rank, slice (and its file, where
    `slice_names` has it) and contribution, with the contour around the region above half the bag's peak.

    Args:
        path: the PNG file.
        images: `(S, H, W, C)` slices in 0..255.
        maps: uint8 `(S, H, W)` from `heatmaps`.
        ranked: `[(slice_index, contribution), ...]`, best first.
        title: the sheet's title.
        slice_names: the file of each slice, or None.

    Returns:
        `path`; the PNG is 330 px high and `round(100 * (2.9 * len(ranked) + 0.9))` px wide.
    """
    width, height = SHEET_PANEL
    figure = new_figure(width * len(ranked) + SHEET_BAR, height, dpi=100)
    axes = figure.subplots(1, len(ranked) + 1, gridspec_kw={"width_ratios": [width] * len(ranked) + [0.12]})
    level = _level(maps)
    for rank, (axis, (s, score)) in enumerate(zip(axes, ranked), 1):
        axis.imshow(overlay(images[s], maps[s]), interpolation="bilinear")
        _contour(axis, maps[s], level)
        named = f"\n{slice_names[s]}" if slice_names is not None else ""
        axis.set_title(f"#{rank}: slice {s}, contribution {score:.3g}{named}", fontsize=8)
        axis.axis("off")
    _colour_bar(figure, SCALE_LABEL, cax=axes[-1])
    figure.suptitle(title, fontsize=8)
    save_figure(figure, path)
    return path

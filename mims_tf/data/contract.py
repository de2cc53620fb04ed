"""The input contract of a model: what its training bags looked like, to say when a new bag does not.

A model trained on single 28 x 28 grey ultrasound images still answers when it is given a 28-slice CT
volume or an RGB H&E tile, and nothing in its probability says the input was nothing like what it learned.
The contract records, from the training split's bags as they arrive (after the package's central slices and
normalisation, before resizing to the model's input), what such a bag is:

- its form: instances per bag, channels, instance height, width and aspect ratio, the value range, the
  dtypes and the file suffixes it was read from, and the preprocessing (`central`, `normalize`);
- its intensities: the range of per-bag mean, standard deviation and fractions of pixels at the bag's
  darkest and brightest (1 % of its range), widened by a margin;
- its content: a typicality distance (Mahalanobis, with a shrunk correlation) over 51 features per instance
  (intensity mean, spread and quantiles, dark and bright fractions, fine and coarse texture, texture
  direction, left-right and top-bottom symmetry, colour, and the brightness layout on a 6 x 6 grid), fitted
  over up to 8 evenly spaced instances of each training bag (so a patient of one tile and one of a hundred
  are measured alike). A bag's distance is the median of its instances'; the limit is the 98th percentile
  of the training instances' cross-validated distances (each from a fit on other bags), plus 10 %. This
  separates two modalities of the same form (BreastMNIST ultrasound and PneumoniaMNIST X-rays are both one
  28 x 28 grey image) where the intensity ranges overlap.

`check_bag(contract, bag)` lists short reasons where a bag differs (none: inside). It is a warning, not a
refusal: a bag outside the contract is one the model's probability says nothing about.

Building streams: `ContractBuilder.add` keeps a few numbers per bag (a reservoir of at most `max_bags`
bags' features, every bag's form exactly), never the bags. Only NumPy is imported, so a client of an
exported model can check its inputs with this module alone; the contract is a JSON-able dict
(`InputContract.to_dict` / `from_dict`). The file is over 400 lines because it is that one self-contained
module (features, builder, check and its phrasing together), which a client may also copy as it is.

Example:

>>> contract = build_contract((source.load(i), ".npz") for i in range(len(source)))
>>> check_bag(contract, ct_volume, ".npz")
['28 instances (trained on 1)', 'mean intensity 181 outside the training range 21 to 139', ...]
"""

import math

import numpy as np

VERSION = 1
KIND = "mims_tf.input_contract"
GRID = 6  # the brightness layout: block means of the bag's mean instance on a GRID x GRID grid
MAX_BAGS = 20000  # bags whose features are kept for the intensity and content statistics (a reservoir beyond)
QUANTILES = (0.005, 0.995)  # the span of per-bag statistics taken as "the training range"
RANGE_MARGIN = 0.25  # the training range is widened by this share of its width on each side
DISTANCE_QUANTILE = 0.98  # of the training bags' typicality distances (each from a fit without it) ...
DISTANCE_MARGIN = 1.1  # ... times this: the content limit
FOLDS = 5  # the training bags' distances are cross-validated: a bag's distance comes from a fit on other bags
SIZE_MARGIN = 0.1  # instance height, width and aspect ratio: 10 % beyond the training range
COUNT_MARGIN = 0.25  # instances per bag, where training bags vary in count: 25 % beyond the range
SHRINKAGE = 0.2  # of the features' correlation towards the identity
MIN_BAGS_FOR_CONTENT = 30  # fewer training bags: no content check (too few to estimate the features' correlations)
MAX_SAMPLE = 1 << 18  # pixel values per bag for quantiles and fractions (an even stride through the bag)
CONTENT_INSTANCES = 8  # instances per bag (evenly spaced) whose content features are computed

FEATURES = (("mean", "mean intensity"), ("std", "intensity spread"), ("q05", "5th percentile intensity"),
            ("q25", "25th percentile intensity"), ("q50", "median intensity"), ("q75", "75th percentile intensity"),
            ("q95", "95th percentile intensity"), ("dark", "dark fraction"), ("bright", "bright fraction"),
            ("texture", "fine texture"), ("texture2", "coarse texture"), ("anisotropy", "texture direction"),
            ("mirror_lr", "left-right symmetry"), ("mirror_tb", "top-bottom symmetry"), ("colour", "colour"),
            ) + tuple((f"layout_{r}{c}", f"brightness at grid cell ({r}, {c})")
                      for r in range(GRID) for c in range(GRID))
INTENSITY_FEATURES = 7  # the first seven are in the bag's value units; the others are shares or ratios
RANGES = (("mean", "mean intensity"), ("std", "intensity spread"), ("dark", "dark fraction"),
          ("bright", "bright fraction"))


def as_bag(array):
    """`array` as a float32 bag `(S, H, W, C)`; `(S, H, W)` is read as one channel.

    Raises `ValueError` for any other rank or an empty bag.
    """
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or min(array.shape) < 1:
        raise ValueError(f"A bag is an array (instances, height, width, channels) or (instances, height, width) "
                         f"with no empty axis. Received: shape={array.shape!r}")
    return array.astype(np.float32, copy=False)


def bag_features(array):
    """The numbers the contract is made of, of one bag: `(form, features)`.

    Args:
        array: a bag `(S, H, W, C)` or `(S, H, W)`, as the model's preprocessing leaves it before resizing.

    Returns:
        `form`: dict of `instances`, `height`, `width`, `channels`, `low`, `high`, `dtype`, `finite` and the
        bag's `mean`, `std`, `dark` and `bright` (fractions of pixels within 1 % of its range from its lowest
        and highest value); `features`: float64 `(k, len(FEATURES))`, one row per instance of up to
        `CONTENT_INSTANCES` evenly spaced ones, in `FEATURES` order.
    """
    dtype = np.asarray(array).dtype.name
    bag = as_bag(array)
    finite = bool(np.isfinite(bag).all())
    if not finite:
        bag = np.nan_to_num(bag, nan=0.0, posinf=0.0, neginf=0.0)
    flat = bag.reshape(-1)
    form = {"instances": bag.shape[0], "height": bag.shape[1], "width": bag.shape[2], "channels": bag.shape[3],
            "low": float(flat.min()), "high": float(flat.max()), "dtype": dtype, "finite": finite,
            "mean": float(flat.mean(dtype=np.float64)), "std": float(flat.std(dtype=np.float64))}
    form["dark"], form["bright"] = _extremes(flat[:: max(1, flat.size // MAX_SAMPLE)], form["low"], form["high"])
    picks = np.unique(np.linspace(0, len(bag) - 1, CONTENT_INSTANCES).round().astype(int))
    return form, np.stack([_instance_features(bag[index]) for index in picks])


def _extremes(values, low, high):
    """Fractions of `values` within 1 % of the range from `low` and from `high` (both 1 for a flat image)."""
    if high <= low:
        return 1.0, 1.0
    span = high - low
    return float(np.mean(values <= low + 0.01 * span)), float(np.mean(values >= high - 0.01 * span))


def _instance_features(image):
    """`FEATURES` of one instance `(H, W, C)`."""
    flat = image.reshape(-1)
    low, high = float(flat.min()), float(flat.max())
    mean, std = float(flat.mean(dtype=np.float64)), float(flat.std(dtype=np.float64))
    sample = flat[:: max(1, flat.size // MAX_SAMPLE)]
    quantiles = np.quantile(sample, (0.05, 0.25, 0.5, 0.75, 0.95))
    grey = image.mean(axis=-1, dtype=np.float64)
    texture = [_texture(grey[None], step) / max(std, 1e-6) for step in (1, 2)]
    rows, columns = (_texture(grey[None], 1, axis) for axis in (1, 2))
    anisotropy = math.log((rows + 1e-3) / (columns + 1e-3))
    mirrors = [_correlation(grey, grey[:, ::-1]), _correlation(grey, grey[::-1])]
    colour = float((image.max(axis=-1) - image.min(axis=-1)).mean() / max(high - low, 1e-6)) if (
        image.shape[-1] > 1) else 0.0
    layout = (_grid_means(grey) - mean) / max(std, 1e-6)
    return np.concatenate([[mean, std], quantiles, _extremes(sample, low, high), texture, [anisotropy], mirrors,
                           [colour], layout.reshape(-1)]).astype(np.float64)


def _texture(grey, step, axis=None):
    """Mean absolute difference between pixels `step` apart along `axis` (1: rows, 2: columns, None: the mean
    of both) of instances `(S, H, W)`."""
    if axis is None:
        return float(np.mean([_texture(grey, step, 1), _texture(grey, step, 2)]))
    if grey.shape[axis] <= step:
        return 0.0
    count = grey.shape[axis]
    return float(np.abs(np.take(grey, range(step, count), axis) - np.take(grey, range(count - step), axis)).mean())


def _correlation(a, b):
    """Pearson correlation of two images of one shape (1 where either is flat)."""
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-12 else 1.0


def _grid_means(image):
    """`(GRID, GRID)` block means of an image `(H, W)` (small images repeated up to the grid first)."""
    image = np.repeat(image, math.ceil(GRID / image.shape[0]), axis=0)
    image = np.repeat(image, math.ceil(GRID / image.shape[1]), axis=1)
    return np.array([[block.mean() for block in np.array_split(rows, GRID, axis=1)]
                     for rows in np.array_split(image, GRID, axis=0)])


class ContractBuilder:
    """Builds an `InputContract` from bags given one at a time (nothing but a few numbers per bag is kept).

    Args:
        central: the central-slices setting the bags were read with (recorded, not applied).
        normalize: the normalisation they were read with (recorded, not applied).
        max_bags: bags whose features are kept; beyond, a uniform reservoir of that many (seeded, so the
            same bags in the same order give the same contract).

    Example:

    >>> builder = ContractBuilder(central=None, normalize="auto")
    >>> for index in range(len(source)):
    ...     builder.add(source.load(index), ".npz")
    >>> contract = builder.build()
    """

    def __init__(self, central=None, normalize=None, max_bags=MAX_BAGS):
        if not isinstance(max_bags, int) or isinstance(max_bags, bool) or max_bags < 1:
            raise ValueError(f"`max_bags` must be a positive integer. Received: max_bags={max_bags!r}")
        self.preprocessing = {"central": central, "normalize": list(normalize) if isinstance(
            normalize, tuple) else normalize}
        self.max_bags = max_bags
        self.count = 0
        self.form = None
        self.suffixes = set()
        self.dtypes = set()
        self._kept = []  # per bag (a reservoir): its RANGES values and content features
        self._random = np.random.default_rng(0)

    def add(self, array, suffix=None):
        """Takes one bag `(S, H, W, C)` or `(S, H, W)`; `suffix`: the file suffix it was read from (e.g. `.npz`)."""
        form, features = bag_features(array)
        aspect = form["height"] / form["width"]
        values = {"instances": form["instances"], "height": form["height"], "width": form["width"],
                  "aspect": aspect, "low": form["low"], "high": form["high"]}
        if self.form is None:
            self.form = {key: [value, value] for key, value in values.items()}
            self.form["channels"] = set()
        for key, value in values.items():
            self.form[key] = [min(self.form[key][0], value), max(self.form[key][1], value)]
        self.form["channels"].add(form["channels"])
        self.dtypes.add(form["dtype"])
        if suffix:
            self.suffixes.add(_suffix(suffix))
        kept = ([form[name] for name, _ in RANGES], features)
        if len(self._kept) < self.max_bags:
            self._kept.append(kept)
        else:
            slot = int(self._random.integers(0, self.count + 1))
            if slot < self.max_bags:
                self._kept[slot] = kept
        self.count += 1
        return self

    def build(self):
        """The `InputContract` of the bags added so far. Raises `ValueError` where none was."""
        if not self.count:
            raise ValueError("No bags were added: a contract needs at least one training bag. Received: 0 bags")
        value_span = max(self.form["high"][1] - self.form["low"][0], 1e-6)
        floors = np.where(np.arange(len(FEATURES)) < INTENSITY_FEATURES, 0.01 * value_span, 0.01)
        per_bag = np.array([values for values, _ in self._kept])
        ranges = {}
        for column, (name, _) in enumerate(RANGES):
            low, high = np.quantile(per_bag[:, column], QUANTILES)
            width = max(high - low, 0.01 * (value_span if name in ("mean", "std") else 1))
            bounds = (0.0, 1.0) if name in ("dark", "bright") else (
                (self.form["low"][0], self.form["high"][1]) if name == "mean" else (0.0, value_span))
            ranges[name] = [float(max(low - RANGE_MARGIN * width, bounds[0])),
                            float(min(high + RANGE_MARGIN * width, bounds[1]))]
        features = [features for _, features in self._kept]
        data = {
            "kind": KIND, "version": VERSION, "bags": self.count, "bags_sampled": len(self._kept),
            "preprocessing": dict(self.preprocessing), "suffixes": sorted(self.suffixes), "dtypes": sorted(self.dtypes),
            "instances": [int(v) for v in self.form["instances"]], "channels": sorted(self.form["channels"]),
            "height": [int(v) for v in self.form["height"]], "width": [int(v) for v in self.form["width"]],
            "aspect": [float(v) for v in self.form["aspect"]],
            "values": [float(v) for v in (self.form["low"][0], self.form["high"][1])],
            "ranges": ranges, "content": _content(features, floors),
        }
        return InputContract(data)


def _content(per_bag, floors):
    """The typicality statistics of the training bags' instance features (a list of `(k, F)`), or None with too
    few bags.

    The fit is over instances (so bags of one tile and of a hundred are alike); the limit comes from
    cross-validated instance distances (each from a fit on other bags' instances), so it holds for new bags of
    the same kind, not just for those the fit has seen. A bag's distance is the median of its instances'.
    """
    if len(per_bag) < MIN_BAGS_FOR_CONTENT:
        return None
    features = np.concatenate(per_bag)
    fold = np.concatenate([np.full(len(rows), index % FOLDS) for index, rows in enumerate(per_bag)])
    fit = _fit(features, floors)
    held_out = np.zeros(len(features))
    for index in range(FOLDS):
        held_out[fold == index] = _distances(_fit(features[fold != index], floors), features[fold == index])
    seen = float(np.quantile(held_out, DISTANCE_QUANTILE))
    return {"features": [name for name, _ in FEATURES], **{k: v.tolist() for k, v in fit.items()}, "seen": seen,
            "limit": seen * DISTANCE_MARGIN}


def _fit(features, floors):
    """Mean, scale and precision (inverse shrunk correlation) of features `(instances, F)`."""
    mean = features.mean(axis=0)
    scale = np.maximum(features.std(axis=0), floors)
    z = (features - mean) / scale
    correlation = (1 - SHRINKAGE) * (z.T @ z) / len(z) + SHRINKAGE * np.eye(z.shape[1])
    return {"mean": mean, "scale": scale, "precision": np.linalg.inv(correlation)}


def _distances(fit, features):
    """Typicality (Mahalanobis) distances of features `(instances, F)` under `fit`."""
    z = (np.atleast_2d(features) - np.asarray(fit["mean"])) / np.asarray(fit["scale"])
    return np.sqrt(np.maximum(np.einsum("bi,ij,bj->b", z, np.asarray(fit["precision"]), z), 0.0))


def _suffix(suffix):
    suffix = str(suffix).lower()
    return suffix if suffix.startswith(".") else "." + suffix


def build_contract(bags, central=None, normalize=None, max_bags=MAX_BAGS):
    """The `InputContract` of an iterable of bags, consumed one at a time (a generator is never materialised).

    Args:
        bags: arrays `(S, H, W, C)` / `(S, H, W)`, or `(array, suffix)` pairs.
        central, normalize, max_bags: see `ContractBuilder`.

    Example:

    >>> contract = build_contract((source.load(i) for i in range(len(source))), normalize="auto")
    """
    builder = ContractBuilder(central=central, normalize=normalize, max_bags=max_bags)
    for item in bags:
        if isinstance(item, tuple):
            builder.add(*item)
        else:
            builder.add(item)
    return builder.build()


class InputContract:
    """What the training bags of a model looked like; `check(bag)` lists how a bag differs.

    Build it with `build_contract` / `ContractBuilder`; store it with `to_dict()` (JSON-able) and read it back
    with `InputContract.from_dict`.
    """

    def __init__(self, data):
        self.data = data

    def to_dict(self):
        """A JSON-able copy (lists, numbers, strings, None)."""
        import copy

        return copy.deepcopy(self.data)

    @classmethod
    def from_dict(cls, data):
        """The contract of a `to_dict()` dict; raises `ValueError` for anything else or a newer version."""
        required = ("kind", "version", "instances", "channels", "height", "width", "aspect", "values", "ranges",
                    "content", "suffixes", "preprocessing")
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f"Not an input contract (a dict with kind={KIND!r}). Received: data={_short(data)}")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise ValueError(f"An input contract of version {data.get('version')!r}; this reader knows versions up "
                             f"to {VERSION}. Received: version={data.get('version')!r}")
        missing = [key for key in required if key not in data]
        if missing:
            raise ValueError(f"An input contract without {', '.join(missing)}. Received: keys={sorted(data)!r}")
        import copy

        return cls(copy.deepcopy(data))

    def check(self, array, suffix=None):
        """See `check_bag`."""
        return check_bag(self, array, suffix)

    def __eq__(self, other):
        return isinstance(other, InputContract) and self.data == other.data

    def __repr__(self):
        return f"InputContract({describe_contract(self)})"


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_bag(contract, array, suffix=None):
    """Short reasons why a bag lies outside the contract; an empty list: inside.

    Args:
        contract: an `InputContract` or its `to_dict()` dict.
        array: the bag `(S, H, W, C)` or `(S, H, W)`, preprocessed as the contract's `preprocessing` says
            (central slices, normalisation) and not resized.
        suffix: the file suffix it was read from (None: not checked).

    Returns:
        A list of plain phrases, e.g. `["28 instances (trained on 1)", "3 channels (trained on 1)"]`.

    Example:

    >>> check_bag(contract, np.zeros((1, 28, 28, 1), np.uint8))
    ['mean intensity 0 outside the training range 21 to 139', ...]
    """
    return check_features(contract, *bag_features(array), suffix=suffix)


def check_features(contract, form, features, suffix=None):
    """`check_bag` on a bag's `bag_features(array)`: one bag's numbers, computed once, checked against several
    contracts (e.g. the models of an ensemble)."""
    data = contract.data if isinstance(contract, InputContract) else InputContract.from_dict(contract).data
    reasons = []
    if suffix and data["suffixes"] and _suffix(suffix) not in data["suffixes"]:
        reasons.append(f"read from a {_suffix(suffix)} file (trained on {', '.join(data['suffixes'])})")
    if form["channels"] not in data["channels"]:
        reasons.append(f"{_count(form['channels'], 'channel')} (trained on {_or(data['channels'])})")
    low, high = data["instances"]
    if low < high:
        low, high = math.floor(low * (1 - COUNT_MARGIN)), math.ceil(high * (1 + COUNT_MARGIN))
    if not low <= form["instances"] <= high:
        reasons.append(f"{_count(form['instances'], 'instance')} (trained on {_span(*data['instances'])})")
    size_ok = all(lo * (1 - SIZE_MARGIN) <= form[key] <= hi * (1 + SIZE_MARGIN)
                  for key, (lo, hi) in (("height", data["height"]), ("width", data["width"])))
    if not size_ok:
        reasons.append(f"{form['height']}x{form['width']} instances (trained on {_span(*data['height'])}x"
                       f"{_span(*data['width'])})")
    aspect = form["height"] / form["width"]
    if size_ok and not data["aspect"][0] / (1 + SIZE_MARGIN) <= aspect <= data["aspect"][1] * (1 + SIZE_MARGIN):
        reasons.append(f"aspect ratio {aspect:.2f} (trained on {_span(*data['aspect'], digits=2)})")
    if not form["finite"]:
        reasons.append("NaN or infinite values")
    low, high = data["values"]
    margin = 0.05 * max(high - low, 1e-6)
    if form["low"] < low - margin or form["high"] > high + margin:
        reasons.append(f"values {_number(form['low'])} to {_number(form['high'])} outside the training range "
                       f"{_number(low)} to {_number(high)}")
    for name, label in RANGES:
        value, (low, high) = form[name], data["ranges"][name]
        if not low <= value <= high:
            reasons.append(f"{label} {_number(value)} outside the training range {_number(low)} to {_number(high)}")
    content = data["content"]
    features = np.atleast_2d(features)
    if content is not None and len(content["mean"]) == features.shape[1]:
        distances = _distances(content, features)
        distance = float(np.median(distances))
        if distance > content["limit"]:
            typical = features[int(np.argmin(np.abs(distances - distance)))]  # the instance nearest the median
            worst = int(np.argmax(np.abs((typical - np.asarray(content["mean"])) / np.asarray(content["scale"]))))
            reasons.append(f"content unlike the training bags (distance {distance:.1f}, limit {content['limit']:.1f}; "
                           f"most: {FEATURES[worst][1]} {_number(typical[worst])}, typical "
                           f"{_number(content['mean'][worst])})")
    return reasons


def _or(values):
    return " or ".join(str(v) for v in values)


def _count(count, noun):
    return f"{count} {noun}" + ("s" if count != 1 else "")


def _span(low, high, digits=None):
    """`"28"` or `"1-130"`; with `digits`, numbers rounded to that many decimals."""
    low, high = (f"{v:.{digits}f}" if digits is not None else f"{v}" for v in (low, high))
    return low if low == high else f"{low}-{high}"


def _number(value):
    """A value in few digits: 181, 0.42, 0.0312, 3.1e+04."""
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3g}"


def describe_contract(contract):
    """One line: what the training bags were (for logs, model cards and error messages)."""
    data = contract.data if isinstance(contract, InputContract) else contract
    low, high = data["ranges"]["mean"]
    suffixes = ", ".join(data["suffixes"]) or "files not recorded"
    return (f"{data['bags']} bags of {_span(*data['instances'])} instance(s) {_span(*data['height'])}x"
            f"{_span(*data['width'])}, {_or(data['channels'])} channel(s), values {_number(data['values'][0])} to "
            f"{_number(data['values'][1])}, mean intensity {_number(low)} to {_number(high)}; from {suffixes}; "
            f"preprocessing {data['preprocessing']}")

"""Bootstrap confidence intervals for AUROC, of one model and of the difference between two on the same bags."""

import numpy as np


def auroc(labels, scores):
    """AUROC of binary `labels` (0/1) by the rank-sum (Mann-Whitney) formula, ties counted half.

    Equals `sklearn.metrics.roc_auc_score` (to rounding) at a fraction of its cost, for the bootstrap's
    thousands of resamples.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels) == 1
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        raise ValueError(f"AUROC needs both classes. Received: {positives} positive and {negatives} negative bags")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _resamples(labels, n_resamples, seed, groups=None):
    """Index arrays of stratified resamples (positives and negatives drawn apart, so every AUROC is defined).

    With `groups` (one id per bag, e.g. the patient of each tile), whole groups are drawn with replacement,
    each bringing all its bags: bags of one patient are not independent, and resampling them one by one would
    make the interval too narrow. Where every group has one label the draw is stratified by it; otherwise
    groups are drawn plainly and a resample holding one class only is drawn again.
    """
    from sklearn.utils import resample

    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    if groups is None:
        for i in range(n_resamples):
            yield resample(indices, replace=True, stratify=labels, random_state=seed + i)
        return
    groups = np.asarray(groups)
    if len(groups) != len(labels):
        raise ValueError("`groups` needs one id per bag. "
                         f"Received: groups of length {len(groups)} for {len(labels)} bags")
    names, inverse = np.unique(groups, return_inverse=True)
    members = [indices[inverse == g] for g in range(len(names))]
    pure = all(len(set(labels[m].tolist())) == 1 for m in members)
    group_labels = np.array([labels[m[0]] for m in members])
    if len(set(labels.tolist())) < 2 or (pure and len(set(group_labels.tolist())) < 2):
        raise ValueError(f"a grouped bootstrap needs both classes. Received: labels {sorted(set(labels.tolist()))}")
    rng = np.random.default_rng(seed)
    for i in range(n_resamples):
        while True:
            if pure:
                drawn = resample(np.arange(len(names)), replace=True, stratify=group_labels, random_state=seed + i)
            else:
                drawn = rng.integers(0, len(names), len(names))
            index = np.concatenate([members[g] for g in drawn])
            if len(set(labels[index].tolist())) == 2:
                break
        yield index


def auroc_ci(labels, scores, n_resamples=2000, level=0.95, seed=0, groups=None):
    """`(auroc, low, high)`: AUROC and its percentile bootstrap interval over bags (stratified resamples; with
    `groups`, over groups of bags, see `_resamples`)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    values = [auroc(labels[i], scores[i]) for i in _resamples(labels, n_resamples, seed, groups)]
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return auroc(labels, scores), float(low), float(high)


def paired_auroc_difference_ci(labels, scores_a, scores_b, n_resamples=2000, level=0.95, seed=0, groups=None,
                               resample_runs=False):
    """`(difference, low, high)` of AUROC(a) - AUROC(b) on the same bags, resampling bags jointly (paired).

    Scores are `(bags,)`, or `(runs, bags)` for several runs of a model (e.g. seeds): AUROC is then the
    mean of the runs' AUROCs, and each resample draws the same bags for every run of both models, so
    the interval holds the test set's sampling and the runs' spread on it (the seeds pooled, not
    averaged into one ensemble score). With `groups` (e.g. each tile's patient), whole groups are drawn.
    With `resample_runs`, each resample also draws the runs with replacement (run i of a with run i of b:
    the same seed), so the interval holds the training's own spread too, the part another machine redraws.
    """
    labels = np.asarray(labels)
    scores_a, scores_b = np.atleast_2d(np.asarray(scores_a)), np.atleast_2d(np.asarray(scores_b))
    if not len(labels) == scores_a.shape[1] == scores_b.shape[1]:
        raise ValueError("paired scores need the same bags: "
                         f"Received: {len(labels)} labels, {scores_a.shape[1]} and {scores_b.shape[1]} scores")

    if resample_runs and scores_a.shape[0] != scores_b.shape[0]:
        raise ValueError(f"resampling runs pairs run i of a with run i of b (e.g. the same seed). "
                         f"Received: {scores_a.shape[0]} and {scores_b.shape[0]} runs")

    def mean_auroc(scores, index, runs=None):
        runs = range(len(scores)) if runs is None else runs
        return float(np.mean([auroc(labels[index], scores[r][index]) for r in runs]))

    everything = np.arange(len(labels))
    rng = np.random.default_rng(seed)
    values = []
    for i in _resamples(labels, n_resamples, seed, groups):
        runs = rng.integers(0, len(scores_a), len(scores_a)) if resample_runs else None
        values.append(mean_auroc(scores_a, i, runs) - mean_auroc(scores_b, i, runs))
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    difference = mean_auroc(scores_a, everything) - mean_auroc(scores_b, everything)
    return float(difference), float(low), float(high)


def seeds_paired_difference_ci(runs, n_resamples=2000, level=0.95, seed=0, groups=None, resample_runs=False):
    """`(difference, low, high)` of the mean over seeds of AUROC(a) - AUROC(b), each seed on its own test bags.

    Args:
        runs: one `(labels, scores_a, scores_b)` per seed; a seed may have its own test split (patients
            split by seed), but within a seed both models scored the same bags.

    Each resample draws every seed's bags with replacement (stratified), the same bags for both models of
    that seed and independently across seeds, and averages the seeds' AUROC differences. Where all seeds
    share one test set, `paired_auroc_difference_ci` with `(runs, bags)` scores resamples it jointly.
    `groups`: None, or one list of group ids per seed (e.g. each tile's patient): whole groups are drawn.
    `resample_runs`: each resample also draws the seeds with replacement (the training's spread).
    """
    runs = [tuple(np.asarray(v) for v in run) for run in runs]
    if not runs or any(not len(y) == len(a) == len(b) for y, a, b in runs):
        raise ValueError("each seed needs labels and both models' scores on the same bags. "
                         f"Received: {len(runs)} seeds")
    groups = [None] * len(runs) if groups is None else list(groups)
    if len(groups) != len(runs):
        raise ValueError(f"`groups` needs one list per seed. Received: {len(groups)} lists for {len(runs)} seeds")
    # With `resample_runs` a seed may be drawn several times in one resample: each draw gets its own bags.
    per_seed = len(runs) if resample_runs else 1
    draws = [list(_resamples(y, n_resamples * per_seed, seed + 7919 * k, g))
             for k, ((y, _, _), g) in enumerate(zip(runs, groups))]
    rng = np.random.default_rng(seed)
    values = []
    for i in range(n_resamples):
        picked = rng.integers(0, len(runs), len(runs)) if resample_runs else range(len(runs))
        differences = []
        for j, k in enumerate(picked):
            d = draws[k][i * per_seed + (j if resample_runs else 0)]
            differences.append(auroc(runs[k][0][d], runs[k][1][d]) - auroc(runs[k][0][d], runs[k][2][d]))
        values.append(np.mean(differences))
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    difference = np.mean([auroc(y, a) - auroc(y, b) for y, a, b in runs])
    return float(difference), float(low), float(high)

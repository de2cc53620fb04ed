import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mims_tf.stats.bootstrap import auroc_ci, paired_auroc_difference_ci


def test_auroc_interval_holds_the_estimate_and_narrows_with_more_bags():
    rng = np.random.default_rng(0)

    def data(n):
        labels = rng.integers(0, 2, n)
        return labels, labels + rng.normal(0, 1.2, n)

    small, large = data(40), data(400)
    auroc, low, high = auroc_ci(*small, n_resamples=500)
    assert auroc == roc_auc_score(*small) and low <= auroc <= high
    _, low_large, high_large = auroc_ci(*large, n_resamples=500)
    assert high_large - low_large < (high - low) / 2
    assert auroc_ci(*small, n_resamples=200, seed=3) == auroc_ci(*small, n_resamples=200, seed=3)  # reproducible


def test_paired_difference_of_a_model_with_itself_is_zero_and_a_better_model_wins():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    good = labels + rng.normal(0, 0.5, 300)
    poor = labels + rng.normal(0, 3.0, 300)
    assert paired_auroc_difference_ci(labels, good, good, n_resamples=200) == (0.0, 0.0, 0.0)
    difference, low, high = paired_auroc_difference_ci(labels, good, poor, n_resamples=500)
    assert difference == roc_auc_score(labels, good) - roc_auc_score(labels, poor) and 0 < low <= difference <= high


def test_paired_difference_over_several_runs_is_the_mean_of_their_aurocs():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 30)
    a = labels + rng.normal(0, 0.8, size=(3, 60))  # three seeds of model a
    b = labels + rng.normal(0, 1.5, size=(2, 60))  # two seeds of model b
    difference, low, high = paired_auroc_difference_ci(labels, a, b, n_resamples=300)
    expected = np.mean([roc_auc_score(labels, s) for s in a]) - np.mean([roc_auc_score(labels, s) for s in b])
    assert difference == pytest.approx(expected) and low < difference < high
    assert paired_auroc_difference_ci(labels, a[0], b[0], n_resamples=50)[0] == pytest.approx(
        roc_auc_score(labels, a[0]) - roc_auc_score(labels, b[0]))


def test_seeds_with_their_own_test_bags_average_their_paired_differences():
    from mims_tf.stats.bootstrap import seeds_paired_difference_ci

    rng = np.random.default_rng(2)
    runs = []
    for n in (40, 50):  # two seeds, two test splits of different sizes
        labels = np.repeat([0, 1], n // 2)
        runs.append((labels, labels + rng.normal(0, 0.7, n), labels + rng.normal(0, 2.0, n)))
    difference, low, high = seeds_paired_difference_ci(runs, n_resamples=300)
    expected = np.mean([roc_auc_score(y, a) - roc_auc_score(y, b) for y, a, b in runs])
    assert difference == pytest.approx(expected) and 0 < low < difference < high
    same = seeds_paired_difference_ci([(y, a, a) for y, a, _ in runs], n_resamples=50)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same bags"):
        seeds_paired_difference_ci([(runs[0][0], runs[0][1], runs[1][2])])


def test_rank_auroc_equals_scikit_learns_with_ties():
    from mims_tf.stats.bootstrap import auroc

    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 2, 50)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=50), 1)  # many ties
        assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 1], [0.2, 0.3])


def test_tiles_of_one_patient_are_resampled_together():
    rng = np.random.default_rng(2)
    labels = np.repeat(rng.permutation([0, 1] * 20), 10)  # 40 patients of 10 identical tiles each
    good = labels + np.repeat(rng.normal(0, 1.0, 40), 10)
    poor = labels + np.repeat(rng.normal(0, 1.5, 40), 10)
    patients = np.repeat(np.arange(40), 10)
    _, low, high = paired_auroc_difference_ci(labels, good, poor, n_resamples=300)
    _, low_patients, high_patients = paired_auroc_difference_ci(labels, good, poor, n_resamples=300, groups=patients)
    _, low_once, high_once = paired_auroc_difference_ci(labels[::10], good[::10], poor[::10], n_resamples=300)
    assert high - low < 0.6 * (high_patients - low_patients)  # tile by tile, the copies look like evidence
    assert abs((high_patients - low_patients) - (high_once - low_once)) < 0.25 * (high_once - low_once)
    _, low_auc, high_auc = auroc_ci(labels, good, n_resamples=300, groups=patients)
    assert low_auc < high_auc
    with pytest.raises(ValueError, match="one id per bag"):
        auroc_ci(labels, good, groups=patients[:10])


def test_resampling_runs_widens_the_interval_by_the_runs_own_spread():
    from mims_tf.stats.bootstrap import seeds_paired_difference_ci

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    base = labels + rng.normal(0, 1.0, 400)
    # model a is better on average, but one of its three runs is much worse: the runs disagree
    a = np.stack([base + rng.normal(0, s, 400) for s in (0.2, 0.2, 3.0)])
    b = np.stack([base + rng.normal(0, 0.8, 400) for _ in range(3)])
    _, low, high = paired_auroc_difference_ci(labels, a, b, n_resamples=400)
    _, low_runs, high_runs = paired_auroc_difference_ci(labels, a, b, n_resamples=400, resample_runs=True)
    assert high_runs - low_runs > 1.5 * (high - low)
    runs = [(labels, a[k], b[k]) for k in range(3)]
    _, low_s, high_s = seeds_paired_difference_ci(runs, n_resamples=200)
    _, low_sr, high_sr = seeds_paired_difference_ci(runs, n_resamples=200, resample_runs=True)
    assert high_sr - low_sr > 1.5 * (high_s - low_s)


def test_groups_holding_both_classes_are_drawn_plainly():
    rng = np.random.default_rng(4)
    labels = np.tile([0, 1], 30)  # 30 patients, each with a normal and a tumour tile
    scores = labels + rng.normal(0, 1.0, 60)
    patients = np.repeat(np.arange(30), 2)
    auroc, low, high = auroc_ci(labels, scores, n_resamples=200, groups=patients)
    assert low <= auroc <= high and low < high
    with pytest.raises(ValueError, match="needs both classes"):
        auroc_ci(np.zeros(6, int), np.arange(6.0), groups=np.arange(6))

"""Decision thresholds on P(positive): the rules as a table, one `choose_threshold`.

    youden       where sensitivity + specificity - 1 (Youden's J) is largest; no target
    sensitivity  the highest threshold whose sensitivity reaches the target
    specificity  the lowest threshold whose specificity reaches the target

Example:

>>> threshold = choose_threshold(labels, scores, "sensitivity", 0.95)
>>> describe_rule("sensitivity", 0.95)
'sensitivity >= 0.95'
"""

import numbers

import numpy as np


def check_fraction(name, value, low_open=True):
    """Raises `ValueError` unless `value` is a real number in (0, 1] (`low_open`) or [0, 1]; returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            (0 < value if low_open else 0 <= value) and value <= 1):
        raise ValueError(f"`{name}` must be in {'(' if low_open else '['}0, 1]. Received: {name}={value!r}")
    return value


def check_threshold(threshold):
    """Raises `ValueError` unless `threshold` is a decision threshold on a probability, in [0, 1]; returns it."""
    return check_fraction("threshold", threshold, low_open=False)


def youden_threshold(labels, scores, target=None):
    """The threshold maximising sensitivity + specificity - 1 on (labels, scores)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def sensitivity_threshold(labels, scores, sensitivity):
    """The highest threshold whose sensitivity on (labels, scores) is at least `sensitivity`."""
    check_fraction("sensitivity", sensitivity)
    positives = np.sort(np.asarray(scores, np.float64)[np.asarray(labels) == 1])[::-1]
    if len(positives) == 0:
        raise ValueError("a target sensitivity needs positive bags")
    needed = int(np.ceil(sensitivity * len(positives) - 1e-9))
    return float(positives[max(needed, 1) - 1])


def specificity_threshold(labels, scores, specificity):
    """The lowest threshold whose specificity on (labels, scores) is at least `specificity`: halfway between
    the highest negative score that must fall below it and the next higher score."""
    check_fraction("specificity", specificity)
    scores = np.asarray(scores, np.float64)
    negatives = np.sort(scores[np.asarray(labels) == 0])
    if len(negatives) == 0:
        raise ValueError("a target specificity needs negative bags")
    needed = max(int(np.ceil(specificity * len(negatives) - 1e-9)), 1)
    below = negatives[needed - 1]
    higher = scores[scores > below]
    return float((below + (higher.min() if len(higher) else 1.0)) / 2)


# name: (function(labels, scores, target), needs a target)
THRESHOLD_RULES = {
    "youden": (youden_threshold, False),
    "sensitivity": (sensitivity_threshold, True),
    "specificity": (specificity_threshold, True),
}


def check_rule(rule, target):
    """Raises `ValueError` unless `rule` is a known rule with a target where it needs one (in (0, 1]), none
    where it takes none; returns `(rule, target)`."""
    from mims_tf.utils import check_choice

    check_choice("rule", rule, list(THRESHOLD_RULES))
    if THRESHOLD_RULES[rule][1]:
        if target is None:
            raise ValueError(f"the rule {rule!r} needs a target in (0, 1]. Received: target=None")
        check_fraction("target", target)
    elif target is not None:
        raise ValueError(f"the rule {rule!r} takes no target. Received: target={target!r}")
    return rule, target


def choose_threshold(labels, scores, rule="youden", target=None):
    """The threshold that `rule` (a name of `THRESHOLD_RULES`) picks on `(labels, scores)` for `target`."""
    check_rule(rule, target)
    return THRESHOLD_RULES[rule][0](labels, scores, target)


def describe_rule(rule, target=None):
    """`"Youden's J"`, `"sensitivity >= 0.95"`: how a threshold was picked, for people."""
    return "Youden's J" if rule == "youden" else f"{rule} >= {target:g}"

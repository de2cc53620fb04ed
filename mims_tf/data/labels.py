"""Class names from labels: the declared ones, else the labels sorted (numbers numerically), refusing what
looks like a mistake (a label on a row or two, `nan`, one number spelt two ways)."""

import collections
import math
import re

from mims_tf.data.errors import DataError, rows_text

# Without declared classes, a label on fewer rows than this (and under RARE_SHARE of them) looks like a typo.
RARE_ROWS = 3
RARE_SHARE = 0.01


def counts_text(counts):
    return ", ".join(f"{name}: {count}" for name, count in counts.items())


def declared_classes(classes):
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise ValueError(f"`classes` must be a list of class names. Received: classes={classes!r}")
    names = [str(c).strip() for c in classes]  # "no, yes": labels are read stripped, so are the names
    if not all(names):
        raise ValueError(f"`classes` holds an empty name. Received: classes={classes!r}")
    if len(names) < 1:
        raise ValueError(f"`classes` must name at least one class. Received: classes={classes!r}")
    if len(set(names)) != len(names):
        repeated = sorted(n for n, k in collections.Counter(names).items() if k > 1)
        raise ValueError(f"`classes` names {', '.join(repeated)} more than once. Received: classes={classes!r}")
    return names


def class_names(labels, classes, source="<rows>", lines=None, rare_check=True):
    """The declared classes, else the labels sorted (numeric labels numerically).

    Without declared classes, a label on fewer than 3 rows and under 1 % of the rows is
    refused as a likely typo (declare the classes to accept it).
    """
    if classes is not None:
        return declared_classes(classes)
    counts = collections.Counter(labels)
    if rare_check:  # labels that matter (training, evaluation); a prediction manifest's are ignored
        _check_label_spellings(counts, source)
        for label, count in counts.items():
            if count < RARE_ROWS and count < RARE_SHARE * len(labels):
                numbers = [n for n, lab in zip(lines or range(2, len(labels) + 2), labels) if lab == label]
                others = ", ".join(repr(k) for k, _ in counts.most_common() if k != label)
                raise DataError(source, f"{rows_text(numbers)}: label {label!r} is on only {count} "
                                        f"of {len(labels)} rows "
                                        f"(other labels: {others}); a typo? To accept it, declare the classes "
                                        "(the classes argument, e.g. classes=[...] in index order)")
    unique = sorted(counts)
    if all(re.fullmatch(r"-?\d+", label) for label in unique):
        return sorted(unique, key=int)
    return unique


def _check_label_spellings(counts, source):
    """Refuses a label that is not a number (`nan`) and two spellings of one number (`1` and `1.0`), which
    would otherwise become classes of their own."""
    numbers = collections.defaultdict(list)
    for label in counts:
        try:
            value = float(label)
        except ValueError:
            continue
        if math.isnan(value):
            raise DataError(source, f"label {label!r} on {counts[label]} row(s) is not a number: leave no label "
                                    "empty or NaN, or declare the classes (the classes argument) if it is one")
        numbers[value].append(label)
    for spellings in numbers.values():
        if len(spellings) > 1:
            raise DataError(source, f"labels {' and '.join(map(repr, sorted(spellings)))} are one number spelt "
                                    "differently: write each class one way, or declare the classes (the classes "
                                    "argument) where they are different classes")

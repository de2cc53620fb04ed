"""Statistics on scores and labels: NumPy, SciPy and scikit-learn only (no Keras), the package's lowest floor.

    bootstrap.py    AUROC by ranks; bootstrap intervals of one AUROC and of paired differences
    calibration.py  temperature and Platt scaling fitted on validation; ECE, Brier score, reliability bins
    thresholds.py   decision threshold rules (`THRESHOLD_RULES`) and `choose_threshold`
    metrics.py      accuracy, sensitivity, specificity at a threshold; mean and spread over runs
"""

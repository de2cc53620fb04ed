"""The timing loop every speed benchmark shares: steps interleaved round by round, median seconds.

Interleaving (one step of each model per round, rather than all steps of one
model and then the next) makes the noise of a shared machine hit every model
alike, so the ratios of the medians are fair even when absolute times drift.
"""

import statistics
import sys
import time


def interleaved_medians(steps, rounds, warmup=1, label="", stream=sys.stdout):
    """Runs each function of `steps` (name -> callable) once per round; returns name -> median seconds.

    `warmup` rounds run first, interleaved too, and are not counted. Each
    counted round prints one line (prefixed by `label`) to `stream`.
    """
    times = {name: [] for name in steps}
    for round_index in range(-warmup, rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if round_index >= 0:
                times[name].append(time.perf_counter() - start)
        if round_index >= 0:
            print(f"{label}round {round_index + 1}/{rounds}: "
                  + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()),
                  file=stream, flush=True)
    return {name: statistics.median(t) for name, t in times.items()}

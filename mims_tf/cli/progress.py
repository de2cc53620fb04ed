"""Log lines and progress bars on stderr, for the command line."""

import logging


class ProgressHandler(logging.StreamHandler):
    """Log lines as they come; progress records (`mims_tf.utils.Progress`) as one bar redrawn in place on a
    terminal, and only their final line where the stream is not a terminal (a log file, a pipe)."""

    WIDTH = 24

    def __init__(self, stream):
        super().__init__(stream)
        self.terminal = hasattr(stream, "isatty") and stream.isatty()
        self.drawn = False  # a bar is on the current line

    def emit(self, record):
        progress = getattr(record, "progress", None)
        if progress is None or not self.terminal:
            if progress is not None and progress[1] < progress[2]:
                return  # not a terminal: no bars, only the final line
            self._end_bar()
            super().emit(record)
            return
        label, done, total = progress
        filled = int(self.WIDTH * done / total) if total else self.WIDTH
        rest = record.getMessage()[len(label) + 2:]
        self.stream.write(f"\r{label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {rest}\033[K")
        self.drawn = done < total
        if not self.drawn:
            self.stream.write("\n")
        self.flush()

    def _end_bar(self):
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False


def EpochLines():
    """A Keras callback logging one line per epoch (`epoch 3/10: loss 0.61, val_auroc 0.83`) to the `mims_tf`
    logger, counted from 1 as `log.csv` and `state.json` count."""
    import keras

    class _EpochLines(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            shown = ", ".join(f"{key} {value:.4g}" for key, value in sorted((logs or {}).items())
                              if isinstance(value, (int, float)))
            total = self.params.get("epochs")
            logging.getLogger("mims_tf").info("epoch %d%s: %s", epoch + 1, f"/{total}" if total else "", shown)

    return _EpochLines()

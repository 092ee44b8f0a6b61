"""Keras callbacks of the runner: per-step losses and seconds, with a progress bar."""
from __future__ import annotations

import time

from tqdm.auto import tqdm

from mrcnn_ohem._compat import import_tf_keras

keras = import_tf_keras()

__all__ = ["StepRecorder"]

#: Logged metrics shown beside the loss on the bar: (log key, short label, format).
_POSTFIX_STATS = (("ohem_rpn_kept_positives", "pos", ".1f"), ("ohem_rpn_kept_negatives", "neg", ".1f"),
                  ("ohem_rpn_threshold", "thr", ".3f"))


class StepRecorder(keras.callbacks.Callback):
    """Records every training step's losses and seconds; shows a tqdm bar.

    Keras logs running means over the epoch; per-step values are recovered from them:
    ``x_t = t * mean_t - (t - 1) * mean_{t-1}``. Every logged metric is recorded, so the OHEM
    selection statistics (``ohem_rpn_kept_positives``, ``ohem_rpn_kept_negatives``,
    ``ohem_rpn_threshold``) land in ``history.json`` and on the bar when the run reports them.

    Args:
        total_steps: length of the progress bar.
        show: draw the bar.
    """

    def __init__(self, total_steps: int, show: bool = True):
        super().__init__()
        self.total_steps = int(total_steps)
        self.show = bool(show)
        self.steps: list[dict[str, float]] = []
        self.epoch = 0
        self.steps_in_epoch = 0
        self._means: dict[str, float] = {}
        self._tick = 0.0
        self._bar = None

    def on_train_begin(self, logs=None):
        self._bar = tqdm(total=self.total_steps, desc="train", unit="step", disable=not self.show)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.steps_in_epoch, self._means = epoch, 0, {}

    def on_train_batch_begin(self, batch, logs=None):
        self._tick = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self._tick
        t = batch + 1
        row = {"epoch": self.epoch, "seconds": seconds}
        for key, mean in (logs or {}).items():
            mean = float(mean)
            row[key] = t * mean - (t - 1) * self._means.get(key, 0.0)
            self._means[key] = mean
        self.steps.append(row)
        self.steps_in_epoch = t
        if self._bar is not None:
            self._bar.update(1)
            postfix = {"loss": f"{row.get('loss', float('nan')):.3f}"}
            # OHEM selection statistics (present when the patched loss reports them).
            for key, label, fmt in _POSTFIX_STATS:
                if key in row:
                    postfix[label] = format(row[key], fmt)
            self._bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()

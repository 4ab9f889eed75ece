"""Adaptive scaling study: the decisions, as plain functions of the records (no torch, no Lightning).

The full grid (every data size x grid point x seed, trained to the end) stays the reference. An
adaptive study (``strategy=Adaptive(...)``) answers one question, a *target* (the error at a size,
or the data needed for an error), and spends compute where it narrows that target's interval most:

* **Model-size search by successive halving** (:mod:`.halving`). At each data size every grid
  point starts on a short budget (rung 0, e.g. a third of the Trainer's epochs). After a rung, grid
  points are ranked by their mean error over seeds (the monitored value through ``to_error``, as
  the law is fitted); the best ``ceil(n / eta)`` go on, and so does any other point that is not
  *clearly* worse than the best (within a margin that grows with the seeds' noise). The others are
  stopped, with the reason recorded. Survivors continue from the checkpoint their rung wrote, up to
  the full budget (the last rung), whose record is the run's final record.
* **Data-size selection** (:mod:`.selection`, :mod:`.state`). The study starts with
  ``initial_sizes`` sizes (the ``initial_sizes - 1`` smallest, then the largest whose first rung the
  budget affords: an extrapolation needs the far end, and its cost, extrapolated from the small
  sizes, is measured before the rest of it runs), fits the law, and then picks the next size by
  the expected shrinkage of the target's interval per unit of compute (a delta-method estimate,
  :func:`width_ratio`, over the size's expected cost, :mod:`.cost` and :mod:`.ledger`), until the
  interval's relative width is at most ``tolerance`` or the next size would exceed ``budget``
  device-seconds.

Everything is decided from the records in the sweep folder (and the sizes chosen so far, kept in
``adaptive.json``), so a restarted study continues where it stopped and never reruns a finished rung.
"""

from lightning_scaling.sweep.adaptive.cost import CostModel, device_seconds
from lightning_scaling.sweep.adaptive.halving import promote, rung_id
from lightning_scaling.sweep.adaptive.ledger import StudyLedger
from lightning_scaling.sweep.adaptive.selection import choose_next_size, expected_width, relative_width, width_ratio
from lightning_scaling.sweep.adaptive.state import AdaptiveState, Decision
from lightning_scaling.sweep.adaptive.strategy import Adaptive, Target, check_strategy

__all__ = [
    "Adaptive",
    "AdaptiveState",
    "CostModel",
    "Decision",
    "StudyLedger",
    "Target",
    "check_strategy",
    "choose_next_size",
    "device_seconds",
    "expected_width",
    "promote",
    "relative_width",
    "rung_id",
    "width_ratio",
]

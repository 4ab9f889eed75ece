"""The sweep machinery behind :class:`~lightning_scaling.ScalingSweep`: plan, store, launchers,
controller and result. Nothing here imports Lightning, so a sweep folder can be analysed anywhere.
"""

from lightning_scaling.sweep.adaptive import Adaptive, Target
from lightning_scaling.sweep.context import RunContext, current_run
from lightning_scaling.sweep.controller import SweepController, SweepError, run_sweep
from lightning_scaling.sweep.launchers import LocalLauncher, RayLauncher, SlurmLauncher, make_launcher
from lightning_scaling.sweep.options import SweepOptions
from lightning_scaling.sweep.plan import RunSpec, SweepPlan, geometric
from lightning_scaling.sweep.reporter import Reporter
from lightning_scaling.sweep.result import SweepResult
from lightning_scaling.sweep.store import SweepStore

__all__ = [
    "Adaptive",
    "LocalLauncher",
    "RayLauncher",
    "Reporter",
    "RunContext",
    "RunSpec",
    "SlurmLauncher",
    "SweepController",
    "SweepError",
    "SweepOptions",
    "SweepPlan",
    "SweepResult",
    "SweepStore",
    "Target",
    "current_run",
    "geometric",
    "make_launcher",
    "run_sweep",
]

"""Lightning callbacks (one file per callback)."""

from lightning_scaling.callbacks.scaling_sweep import ScalingSweep

__all__ = ["ScalingSweep"]

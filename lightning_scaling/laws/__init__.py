r"""Scaling laws: functional forms, robust fits with intervals, predictions (numpy and scipy only).

Importing this package never imports torch or Lightning, so it can be used, read and tested alone.

>>> import numpy as np
>>> from lightning_scaling.laws import fit_learning_curve
>>> m = np.geomspace(1e3, 1e6, 10)
>>> fit = fit_learning_curve(m, 2.0 * m**-0.35 + 0.01, bootstrap=100)
>>> round(fit.exponent, 3)
-0.35
"""

from lightning_scaling.laws.fit import LearningCurveFit, fit_learning_curve
from lightning_scaling.laws.forms import FORMS, M4, BrokenPowerLaw, Form, Hestness, PowerLaw, get_form
from lightning_scaling.laws.intervals import DataNeeded, Prediction
from lightning_scaling.laws.joint import (
    JointLawFit,
    ModelSizeLaw,
    SharedExponentFit,
    fit_joint_law,
    fit_model_size_law,
    fit_shared_exponent,
)
from lightning_scaling.laws.selection import FormScores, extrapolation_error, select_form

__all__ = [
    "FORMS",
    "M4",
    "BrokenPowerLaw",
    "DataNeeded",
    "Form",
    "FormScores",
    "Hestness",
    "JointLawFit",
    "LearningCurveFit",
    "ModelSizeLaw",
    "PowerLaw",
    "Prediction",
    "SharedExponentFit",
    "extrapolation_error",
    "fit_joint_law",
    "fit_learning_curve",
    "fit_model_size_law",
    "fit_shared_exponent",
    "get_form",
    "select_form",
]

"""The same small project as ``sweep_script.py``, driven by LightningCLI.

The sweep's grid names a model argument by its CLI path (``model.hidden``); every run receives it
as ``--model.hidden=VALUE`` and its seed as ``--seed_everything=SEED``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pytorch_lightning.cli import LightningCLI

sys.path.insert(0, str(Path(__file__).parent))
from sweep_script import MLP, TeacherData

from lightning_scaling import ScalingSweep, current_run


def main() -> None:
    sweep = ScalingSweep(**json.loads(os.environ["LS_TEST_SWEEP"]))
    cli = LightningCLI(
        MLP, TeacherData,
        trainer_defaults={"callbacks": [sweep], "logger": False, "enable_checkpointing": False,
                          "enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu",
                          "devices": 1, "max_epochs": 10},
        save_config_callback=None,
    )
    if current_run().is_run:
        # what the run actually trained: the grid value reached the model through the CLI
        print("HIDDEN", cli.model.hparams.hidden, "SEED", os.environ.get("PL_GLOBAL_SEED"))
    elif sweep.result is not None:
        print("RESULT", json.dumps({"n_runs": len(sweep.result.runs)}))


if __name__ == "__main__":
    main()

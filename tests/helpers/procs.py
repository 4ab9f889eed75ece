"""Process helpers shared by the end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import warnings
from pathlib import Path


def signal_masks(pid: int) -> str:
    """The process's blocked/ignored/caught signal masks (Linux), for a failure message."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "unknown"
    masks = [line.replace("\t", "") for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    return " ".join(masks)


def interrupt(proc: subprocess.Popen, timeout: float = 90) -> str:
    """Ctrl-C the controller and return its stderr.

    Twice, under heavy load in local CI runs, a first SIGINT went unanswered (cause not found: the
    controller's masks showed SIGINT caught and unblocked); a user would press Ctrl-C again, and so
    does this helper, with a warning that says so, after 30 s without an answer.
    """
    before = signal_masks(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        warnings.warn(f"a first Ctrl-C went unanswered for 30 s (signal state before: {before}); sent another",
                      stacklevel=2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout)
    return err

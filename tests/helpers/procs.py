"""Process helpers shared by the end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def signal_masks(pid: int) -> str:
    """The process's blocked/ignored/caught signal masks (Linux), for a failure message."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "unknown"
    masks = [line.replace("\t", "") for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    return " ".join(masks)


def default_sigint() -> None:
    """``preexec_fn``: the child gets SIGINT's default disposition, as from a terminal.

    A shell that runs a command in the background makes it ignore SIGINT, children inherit that,
    and Python then installs no KeyboardInterrupt handler (the nohup behaviour, which the sweep
    respects): a Ctrl-C test started that way would see its Ctrl-C ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def interrupt(proc: subprocess.Popen, timeout: float = 90) -> str:
    """Ctrl-C the controller and return its stderr; fail with its signal state if it does not stop."""
    before = signal_masks(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"Ctrl-C did not stop the controller within {timeout:g} s; its signal state before "
                             f"the Ctrl-C: {before}") from None
    return err

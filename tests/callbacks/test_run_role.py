"""The run role (``callbacks/run_role.py``): what the callback does inside one run of a sweep."""

from __future__ import annotations

import torch

from lightning_scaling.callbacks.run_role import NonFiniteLoss


def test_a_nan_loss_is_caught_without_a_device_sync_on_every_step(monkeypatch):
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or item(self))
    # as on a GPU: the flag stays on the device and is read once every 4 steps
    watch = NonFiniteLoss(read_every=4, deferred=True)
    assert [watch.update(torch.tensor(x), step) for step, x in enumerate([1.0, 0.9, float("nan")])] == [None] * 3
    assert reads == []
    reason = watch.update(torch.tensor(0.5), 3)
    assert reads == [1] and reason == "training loss became NaN or inf between steps 0 and 3"
    # a NaN in the last steps before the run validates or ends is read then
    assert watch.update(torch.tensor(float("inf")), 4) is None and watch.flush(5) is not None
    assert watch.flush(6) is None
    # on CPU every step is read (a scalar read costs nothing there) and the reason names the step
    cpu = NonFiniteLoss(read_every=4)
    assert cpu.update(torch.tensor(1.0), 0) is None and cpu.update(torch.tensor(float("nan")), 1) == \
        "training loss became nan at step 1"

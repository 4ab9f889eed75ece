"""A fake launcher for controller tests: one slot whose runs end as soon as they are submitted (no process)."""

from __future__ import annotations


class InstantSlot:
    """One slot; a subclass's ``submit`` writes what the run would (its record) and calls this one."""

    capacity = 1

    def __init__(self, store):
        self.store, self.jobs = store, []

    def describe(self):
        return "an instant fake slot"

    def submit(self, job):
        self.jobs.append(job)

    def poll(self):
        done, self.jobs = [(j, 0) for j in self.jobs], []
        return done

    def running(self):
        return self.jobs

    def shutdown(self, grace=10.0):
        pass

    def close(self):
        pass

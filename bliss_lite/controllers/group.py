"""Moving several axes as one: checked together, started together, stopped together."""
from __future__ import annotations

from bliss_lite.config.fields import is_finite_number
from bliss_lite.controllers.errors import AxisError
from bliss_lite.controllers.motion import MotionTask, plan_motion


class Group:
    def __init__(self, *axes):
        names = [a.name for a in axes]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise AxisError(f"group: axis {', '.join(sorted(duplicates))} given twice")
        self.axes = list(axes)
        self._task = None

    def move(self, targets, wait=True, relative=False):
        """Move {axis: target}; every target is checked against its limits before any motion."""
        unknown = [a.name for a in targets if a not in self.axes]
        if unknown:
            raise AxisError(f"group: {', '.join(unknown)} not in this group")
        plans = []
        for axis, target in targets.items():
            if relative and is_finite_number(target):
                target = axis.position + float(target)
            plans.append(plan_motion(axis, target))
        self._task = MotionTask(plans).start()
        if wait:
            self._task.wait()
        return self._task

    def wait_move(self):
        if self._task is not None:
            self._task.wait()

    def stop(self, wait=True):
        if self._task is not None:
            self._task.stop(wait=wait)

    @property
    def is_moving(self):
        return any(a.is_moving for a in self.axes)

    @property
    def position(self):
        return {a: a.position for a in self.axes}

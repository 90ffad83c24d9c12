"""The acquisition chain: masters that pace a scan and the slaves they trigger.

Every device taking part in a scan is wrapped in an acquisition object with the same life
cycle: `prepare` (check and arm, before anything moves), `start`, `trigger` (one point, for
software-triggered objects), `wait` (until its acquisition is complete) and `stop` (always
called, also on error and Ctrl-C). A master's `iterate()` yields once per trigger it gives its
children: a motor master yields after each step, a timer master after each count time, a
continuous master (next issue) starts the motion and lets hardware-triggered slaves (a
detector fed by position triggers) produce their data on their own.

Data leaves an object only through `emit`, into the scan's buffers; the chain never writes a
file or talks to Redis itself, so the scan loop never waits for I/O.
"""
from __future__ import annotations

SOFTWARE = "software"
HARDWARE = "hardware"


class AcquisitionObject:
    """A device's part in one scan. Subclasses override the steps they need."""

    trigger_mode = SOFTWARE

    def __init__(self, name):
        self.name = name
        self._emit = None

    def channels(self):
        """ChannelSpecs of the data this object emits."""
        return []

    def attach(self, emit):
        self._emit = emit

    def emit(self, values):
        """Hand {channel: value (one point) or points (leading axis)} to the scan."""
        self._emit(values)

    def prepare(self):
        pass

    def start(self):
        pass

    def trigger(self):
        pass

    def count_starts(self):
        """The master's count starts now; its trigger comes when the count ends. Objects that
        sample during the count (a counter reading a device) start here."""

    def wait(self):
        pass

    def stop(self):
        pass


class AcquisitionMaster(AcquisitionObject):
    """An object that paces others: each step of `iterate()` triggers its software children."""

    def __init__(self, name, children=()):
        super().__init__(name)
        self.children = list(children)

    def iterate(self):
        """Yield once per trigger of the children."""
        yield


class AcquisitionChain:
    """A tree of masters and slaves, run as one scan: prepare all, start all, pace, stop all."""

    def __init__(self, top_master):
        self.top = top_master
        self.nodes = list(self._walk(top_master))

    def _walk(self, node):
        yield node
        for child in getattr(node, "children", ()):
            yield from self._walk(child)

    def channels(self):
        return [spec for node in self.nodes for spec in node.channels()]

    def attach(self, emit):
        for node in self.nodes:
            node.attach(emit)

    def prepare(self):
        """Check and arm every object; if one refuses, stop those already prepared."""
        try:
            for node in self.nodes:
                node.prepare()
        except BaseException:
            self._stop_all()
            raise

    def run(self):
        """Start slaves before their masters (armed before the first trigger), pace, wait, stop."""
        try:
            for node in reversed(self.nodes):
                node.start()
            self._pace(self.top)
            for node in self.nodes:
                node.wait()
        except BaseException as exc:
            for error in self._stop_all():  # what stopped the scan stays the error reported
                exc.add_note(f"also, while stopping: {error}")
            raise
        errors = self._stop_all()
        if errors:
            raise errors[0]

    def _pace(self, master):
        for _ in master.iterate():
            for child in master.children:
                if child.trigger_mode != SOFTWARE:
                    continue
                if isinstance(child, AcquisitionMaster):
                    self._pace(child)
                else:
                    child.trigger()

    def _stop_all(self):
        """Stop every object, masters first (motion ends before detectors are disarmed); one
        object failing to stop does not keep the others from stopping. Returns the errors."""
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except BaseException as exc:  # noqa: BLE001 - a 2nd Ctrl-C too: stop the rest, then report
                errors.append(exc)
        interrupts = [e for e in errors if isinstance(e, KeyboardInterrupt)]
        if interrupts:
            raise interrupts[0]
        return errors

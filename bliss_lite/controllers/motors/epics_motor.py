"""Axes that are EPICS motor records, over Channel Access (pyepics client), one record per axis.

pyepics rather than caproto's threading client: it drives libca (C, shipped in its wheel), whose
own threads do the network work, so a read costs ~0.3 ms and never depends on how gevent has
patched Python's threads; it is also what ophyd uses, so the benchmark compares like with like.
Reads are real CA gets (not a monitor's cache), so a dead IOC is seen at once, not as a stale value.

The record's .RBV is the dial position (steps = RBV * steps_per_unit); a move writes .VAL after
.VELO and .ACCL (s to full speed), refused first when beyond the record's .HLM/.LLM or when
.MSTA has its problem bit; MOVING is .DMOV == 0; .MSTA gives the limit switches (LIMPOS,
LIMNEG) and the problem bit (FAULT); stopping writes .STOP = 1. Puts ask for the IOC's answer:
a put it refuses is an AxisFault naming axis and PV (for .VAL, seen when the move ends). Any
channel that does not connect or answer within `timeout`, or whose IOC goes away during a
request, is an AxisFault naming axis and PV. An axis's channels are all opened at its first
use, so their searches go out together and a stop after the IOC died waits `timeout`, not the
first-connection wait. libca reconnects the channels of an IOC that comes back by itself, after
its disconnect governor's few seconds (8-10 s measured here).

    - class: epics_motor
      timeout: 1.0
      axes:
        - {name: emot, prefix: "SIM:m1", steps_per_unit: 1000}
"""
from __future__ import annotations

import ctypes
import time
from contextlib import contextmanager

from bliss_lite.config.fields import Field, positive
from bliss_lite.controllers.axis_state import AxisState
from bliss_lite.controllers.errors import AxisFault, LimitError
from bliss_lite.controllers.motors.device_motor import DeviceMotorController

PLUS_LS, MINUS_LS, PROBLEM = 1 << 2, 1 << 13, 1 << 9  # motor record MSTA bits
RECORD_FIELDS = (".RBV", ".VAL", ".DMOV", ".MSTA", ".STOP", ".LLM", ".HLM", ".VELO", ".ACCL")  # the ones used


class PutRefused(Exception):
    """The IOC answered a put with an error (a record that refuses the value, puts disabled)."""


_put_answers = {}  # id: the answer list of a put in flight, kept alive until libca calls back
_put_callback = None  # libca's put callback (made at the first put: it needs libca loaded)


def _on_put_answer(args):
    """libca's put callback, in its own thread: the IOC's status, for the waiter."""
    answer = _put_answers.pop(id(args.usr), None)
    if answer is not None:
        answer.append(args.status)


class Channels:
    """PV objects by name, read without a monitor's cache. A channel not connected yet gets
    CONNECT_TIMEOUT for its first connection (a CA search may take a few tries); one that was
    connected once and lost is a fault within `timeout`. pyepics' own exceptions (a channel
    that drops while a get or put is in flight) become ConnectionErrors, so callers catch one
    kind of failure: OSError (with TimeoutError). Puts ask for the IOC's answer (a put callback),
    so a put the IOC refuses is a PutRefused, not a silent no-op."""

    CONNECT_TIMEOUT = 3.0  # s for a channel's first connection

    def __init__(self, timeout):
        self.timeout = timeout
        self._pvs = {}
        self._caches = {}  # name: pyepics' cache entry of the channel (its pending gets)
        self._connected_once = set()  # names: filled by libca's connection callbacks
        self._puts = {}  # name: the answer list of its last put

    def open(self, *names):
        """Create these channels now, without waiting: their searches go out together."""
        for name in names:
            if name not in self._pvs:
                import epics  # lazily: the shell starts without libca loaded

                self._pvs[name] = epics.PV(name, auto_monitor=False, connection_timeout=self.timeout,
                                           connection_callback=self._connection)
                self._caches[name] = epics.ca.get_cache(name)

    def _connection(self, pvname=None, conn=False, **_):
        if conn:
            self._connected_once.add(pvname)
        self._forget_pending_gets(pvname)  # none survives its circuit

    def _forget_pending_gets(self, name):
        """pyepics marks a get pending before it asks libca, and leaves the mark when libca
        refuses the request (a circuit that just went down: 'Virtual circuit disconnect'). Every
        later get of the channel then waits for an answer never asked for: 'no value' for ever,
        even once the IOC is back. A pending get cannot outlive a refused request or a change of
        the channel's connection, so the mark is dropped then."""
        from epics import ca

        entry = self._caches.get(name)
        if entry is None:
            return
        with entry.lock:
            for ftype, result in list(entry.get_results.items()):
                if result[0] is ca.GET_PENDING:
                    entry.get_results[ftype] = [None]

    def pv(self, name):
        self.open(name)
        pv = self._pvs[name]
        wait = self.timeout if name in self._connected_once else max(self.timeout, self.CONNECT_TIMEOUT)
        if not pv.connected and not pv.wait_for_connection(timeout=wait):
            raise TimeoutError(f"{name} not connected within {wait:g} s")
        return pv

    def get(self, name):
        try:
            with _ca_errors(name, "get"):
                value = self.pv(name).get(timeout=self.timeout, use_monitor=False)
        except ConnectionError:
            self._forget_pending_gets(name)
            raise
        if value is None:
            raise TimeoutError(f"no value of {name} within {self.timeout:g} s")
        return value

    def put(self, name, value, wait=True):
        """Put `value`; with `wait`, the IOC's answer is awaited (`timeout`), else `put_answer`
        checks it later (a motor record answers a put to .VAL once the move is over)."""
        from epics import ca, dbr

        global _put_callback
        if _put_callback is None:
            _put_callback = dbr.make_callback(_on_put_answer, dbr.event_handler_args)
        with _ca_errors(name, "put"):
            chid = self.pv(name).chid
            ca.use_initial_context()
            ftype = ca.field_type(chid)
            data = (1 * dbr.Map[ftype])()
            data[0] = value
            answer = self._puts[name] = []
            _put_answers[id(answer)] = answer
            status = ca.libca.ca_array_put_callback(ftype, 1, chid, data, _put_callback, ctypes.py_object(answer))
            if status != dbr.ECA_NORMAL:
                _put_answers.pop(id(answer), None)
                ca.PySEVCHK("put", status)
            ca.flush_io()
        if wait:
            self.put_answer(name, value)

    def put_answer(self, name, value, required=True):
        """Wait (`timeout`) for the IOC's answer to the last put to `name`: PutRefused when it
        refused it; TimeoutError without an answer when `required`."""
        from epics import ca, dbr

        answer = self._puts.get(name)
        if answer is None:
            return
        deadline = time.monotonic() + self.timeout
        while not answer and time.monotonic() < deadline:
            time.sleep(0.001)
        if not answer:
            if required:
                raise TimeoutError(f"put to {name} not answered within {self.timeout:g} s")
            return
        del self._puts[name]
        if answer[0] != dbr.ECA_NORMAL:
            raise PutRefused(f"put of {value!r} to {name} refused: {ca.message(answer[0])}")


@contextmanager
def _ca_errors(name, what):
    """pyepics' exceptions (none of them an OSError) as a ConnectionError naming the PV."""
    from epics import ca

    try:
        yield
    except (ca.ChannelAccessException, ca.ChannelAccessGetFailure, ca.CASeverityException) as exc:
        raise ConnectionError(f"{what} of {name} failed: {str(exc).strip()}") from None


class EpicsMotorController(DeviceMotorController):
    FIELDS = (Field("timeout", "number", 1.0, check=positive),)
    AXIS_EXTRA_FIELDS = (Field("prefix", "str"),)
    FAULT_TEXT = "reports a problem (MSTA)"

    def __init__(self, name, node, config):
        self.prefixes, self._sent, self._targets = {}, {}, {}
        super().__init__(name, node, config)
        self.timeout = float(self.options["timeout"])
        self.channels = Channels(self.timeout)

    def initialize_axis(self, axis, extras):
        self.prefixes[axis] = extras["prefix"]

    def _do(self, axis, field, function, *args):
        prefix = self.prefixes[axis]
        self.channels.open(*(prefix + f for f in RECORD_FIELDS))  # the axis's channels: searched together
        name = f"{prefix}{field}"
        try:
            return function(name, *args)
        except (TimeoutError, OSError, PutRefused) as exc:
            raise AxisFault(f"{axis.name}: EPICS PV {name}: {exc}") from None

    def _get(self, axis, field):
        return self._do(axis, field, self.channels.get)

    def _put(self, axis, field, value, wait=True):
        self._do(axis, field, self.channels.put, value, wait)

    # -- hardware API ------------------------------------------------------------------------
    def device_text(self, axis):
        return f"EPICS record {self.prefixes[axis]}"

    def read_position(self, axis):
        return float(self._get(axis, ".RBV")) * axis.steps_per_unit

    def state(self, axis):
        if not int(self._get(axis, ".DMOV")):
            return AxisState("MOVING")
        status = int(self._get(axis, ".MSTA"))
        if status & PROBLEM:
            return AxisState("FAULT")
        names = ["READY"] + (["LIMPOS"] if status & PLUS_LS else []) + (["LIMNEG"] if status & MINUS_LS else [])
        return AxisState(*names)

    def start_all(self, *moves):
        for axis, target in moves:
            status = int(self._get(axis, ".MSTA"))
            if status & PROBLEM:
                raise AxisFault(f"{axis.name}: {self.device_text(axis)} reports a problem (MSTA {status:#x}): "
                                "move refused")
            dial = float(target) / axis.steps_per_unit
            low, high = float(self._get(axis, ".LLM")), float(self._get(axis, ".HLM"))
            if not low <= dial <= high:
                raise LimitError(f"{axis.name}: dial {dial:g} beyond the limits [{low:g}, {high:g}] of "
                                 f"{self.device_text(axis)}")
            wanted = (axis.velocity, axis.acceleration)
            if self._sent.get(axis) != wanted:
                self._put(axis, ".VELO", float(axis.velocity))
                self._put(axis, ".ACCL", float(axis.velocity) / float(axis.acceleration))
                self._sent[axis] = wanted
        for axis, target in moves:
            dial = float(target) / axis.steps_per_unit
            self._put(axis, ".VAL", dial, wait=False)  # answered at the end of the move
            self._targets[axis] = dial

    def wait_move(self, axis):
        """The move's end, then the IOC's answer to its .VAL put (with the end on a motor record,
        at once when refused): a refused move is an AxisFault naming the PV."""
        super().wait_move(axis)
        if axis in self._targets:
            self._do(axis, ".VAL", self.channels.put_answer, self._targets.pop(axis), False)

    def stop_axis(self, axis):
        self._put(axis, ".STOP", 1, wait=False)  # answered once the record has stopped

    def axis_info(self, axis):
        return f"EPICS MOTOR AXIS:\n    {axis.name} on record {self.prefixes[axis]}"


def create_controller(name, node, config):
    return EpicsMotorController(name, node, config)

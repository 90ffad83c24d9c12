"""A simulated motor record and counter served over EPICS Channel Access (caproto server).

    EPICS_CA_SERVER_PORT=N python simulators/epics_ioc.py --prefix SIM: [--motors m1,m2]

serves PREFIXm1.VAL .RBV .DMOV .MOVN .STOP .HLM .LLM .VELO .ACCL .MSTA (the motor record's
fields a client uses, and inert ones ophyd's EpicsMotor connects to), PREFIXm1:STOPCOUNT (stops
received, for tests), the tests' hooks PREFIXm1:SIM_FAULT (1: MSTA's problem bit), :SIM_HLS and
:SIM_LLS (1: the high or low limit switch, in MSTA, .HLS and .LLS) and :SIM_REFUSE (1: puts to
.VAL, .VELO and .ACCL refused with an error), PREFIXcnt (a noisy
flat signal) and PREFIXramp (grows by 1000 a second from the start, computed at each read);
prints `LISTENING port` once it serves. Motion follows simulators/trapezoid.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from caproto.server import PVGroup, SubGroup, pvproperty, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulators.trapezoid import Trapezoid  # noqa: E402

DONE, MOVING_BIT, PLUS_LS, MINUS_LS, PROBLEM = 1 << 1, 1 << 10, 1 << 2, 1 << 13, 1 << 9  # MSTA bits (0-based)


class MotorRecord(PVGroup):
    VAL = pvproperty(value=0.0, name=".VAL", precision=4)
    RBV = pvproperty(value=0.0, name=".RBV", read_only=True, precision=4)
    DMOV = pvproperty(value=1, name=".DMOV", read_only=True)
    MOVN = pvproperty(value=0, name=".MOVN", read_only=True)
    STOP = pvproperty(value=0, name=".STOP")
    HLM = pvproperty(value=100.0, name=".HLM")
    LLM = pvproperty(value=-100.0, name=".LLM")
    VELO = pvproperty(value=5.0, name=".VELO")
    ACCL = pvproperty(value=0.1, name=".ACCL")  # s to reach VELO, as the motor record has it
    MSTA = pvproperty(value=DONE, name=".MSTA", read_only=True)
    STOPCOUNT = pvproperty(value=0, name=":STOPCOUNT", read_only=True)
    # test hooks: the record's problem bit, its limit switches, puts refused
    SIM_FAULT = pvproperty(value=0, name=":SIM_FAULT")
    SIM_HLS = pvproperty(value=0, name=":SIM_HLS")
    SIM_LLS = pvproperty(value=0, name=":SIM_LLS")
    SIM_REFUSE = pvproperty(value=0, name=":SIM_REFUSE")
    # fields ophyd's EpicsMotor connects to (the benchmark's peer); inert here
    OFF, DIR, FOFF, SET = (pvproperty(value=v, name=n) for v, n in ((0.0, ".OFF"), (0, ".DIR"), (0, ".FOFF"),
                                                                      (0, ".SET")))
    EGU = pvproperty(value="mm", name=".EGU", max_length=16)
    HLS, LLS, TDIR, HOMF, HOMR = (pvproperty(value=0, name=n) for n in (".HLS", ".LLS", ".TDIR", ".HOMF", ".HOMR"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.motion = Trapezoid(0.0, 5.0, 50.0)
        self.status_bits = 0  # MSTA's problem and limit-switch bits, set by the hooks

    def refused(self, field):
        if self.SIM_REFUSE.value:
            raise ValueError(f"simulated refusal: {field} not written")

    @VAL.putter
    async def VAL(self, instance, value):
        self.refused(".VAL")
        if not self.LLM.value <= value <= self.HLM.value:
            raise ValueError(f"{value} outside [{self.LLM.value}, {self.HLM.value}]")
        self.motion.velocity = self.VELO.value
        self.motion.acceleration = self.VELO.value / max(self.ACCL.value, 1e-3)
        self.motion.move(float(value))
        await self._publish()
        return value

    @VELO.putter
    async def VELO(self, instance, value):
        self.refused(".VELO")
        return value

    @ACCL.putter
    async def ACCL(self, instance, value):
        self.refused(".ACCL")
        return value

    @SIM_FAULT.putter
    async def SIM_FAULT(self, instance, value):
        if value:
            self.motion.stop()  # a tripped drive brakes
        return await self._hook(PROBLEM, value)

    @SIM_HLS.putter
    async def SIM_HLS(self, instance, value):
        await self.HLS.write(int(bool(value)))
        return await self._hook(PLUS_LS, value)

    @SIM_LLS.putter
    async def SIM_LLS(self, instance, value):
        await self.LLS.write(int(bool(value)))
        return await self._hook(MINUS_LS, value)

    async def _hook(self, bit, value):
        """A status hook's new value: its MSTA bit set or cleared, published at once."""
        self.status_bits = (self.status_bits | bit) if value else (self.status_bits & ~bit)
        await self._publish()
        return int(bool(value))

    def msta(self, moving):
        return (MOVING_BIT if moving else DONE) | self.status_bits

    @STOP.putter
    async def STOP(self, instance, value):
        if value:
            self.motion.stop()
            await self.STOPCOUNT.write(self.STOPCOUNT.value + 1)
            await self._publish()
        return 0

    async def _publish(self):
        moving = self.motion.moving()
        await self.RBV.write(self.motion.position())
        if self.DMOV.value != (not moving):
            await self.DMOV.write(int(not moving))
            await self.MOVN.write(int(moving))
        if self.MSTA.value != self.msta(moving):
            await self.MSTA.write(self.msta(moving))

    @RBV.scan(period=0.01)
    async def RBV(self, instance, async_lib):
        if self.motion.moving() or not self.DMOV.value:
            await self._publish()


def ioc_class(motors):
    body = {name: SubGroup(MotorRecord, prefix=name) for name in motors}
    body["cnt"] = pvproperty(value=100.0, name="cnt", read_only=True, precision=4)

    async def noise(self, instance, async_lib):
        await instance.write(100.0 + float(self.rng.normal(0.0, 0.5)))

    body["rng"] = np.random.default_rng()
    body["ramp"] = pvproperty(value=0.0, name="ramp", read_only=True, precision=4)
    started = time.monotonic()

    async def ramp(self, instance):
        return 1000.0 * (time.monotonic() - started)

    cls = type("SimIOC", (PVGroup,), body)
    cls.cnt.scan(period=0.05)(noise)
    cls.ramp.getter(ramp)
    return cls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="SIM:")
    parser.add_argument("--motors", default="m1,m2")
    args = parser.parse_args(argv)
    ioc = ioc_class([m for m in args.motors.split(",") if m])(prefix=args.prefix)
    port = os.environ.get("EPICS_CA_SERVER_PORT", "5064")

    async def announce(async_lib):
        print(f"LISTENING {port}", flush=True)

    run(ioc.pvdb, interfaces=["127.0.0.1"], log_pv_names=False, startup_hook=announce)


if __name__ == "__main__":
    main()

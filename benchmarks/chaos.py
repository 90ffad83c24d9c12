#!/usr/bin/env python3
"""Chaos: N scans of mixed kinds through the simulator processes (stages behind the motor
controller's socket, the Pilatus behind its own), each with a random Ctrl-C or an injected
fault, or none. After every scan it checks what the reliability promise says:

- `motors_left_moving`: axes the controller still reports MOVING once the scan has returned;
- `corrupt_files`: entries that do not open, lack their end_reason, or disagree with it;
- `points_lost`: points taken (in memory) but not in the file, plus scalar points in the file
  but not in the sealed Redis scan;
- `hangs`: scans that did not return within their own duration + HANG_S;
- `unsealed`: Redis scans not sealed with the entry's end_reason (Redis itself is one of the
  faults: its private server is killed mid-scan and must be back, the scan republished);
- `unnamed_errors`: failures whose message does not start with the axis, detector or command;
- `not_returned`: relative scans ended by one Ctrl-C that did not move back to the start;
- beam losses (a ring current suspender on every scan, the beam lost at a random moment for
  a random time): `lines_lost` and `lines_doubled`, step-scan points or grid points of
  continuous scans missing or taken twice among the valid frames;
- kill and resume (`--resumes`: an xrdct in a process of its own, killed with SIGKILL at a
  random moment, then `resume_scan` in another): the same counts over N.1 + N.2;
- `wrong_state`: scans that ended other than the fault implies (`expected_state`: none or a
  beam loss: SUCCESS; a Ctrl-C pressed before the scan ended: USER_ABORT; a fault the scan
  raised: FAILURE, one it rode out or never met: SUCCESS; a resume: SUCCESS).
All must be 0. Prints one JSON line.

    python benchmarks/chaos.py --scans 50 [--seed 1] [--resumes 10]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_env import private_environment  # noqa: E402

HANG_S = 20.0
MOTOR_FAULTS = ("fault", "stall", "limit", "silent", "garble", "drop", "delay")
DETECTOR_FAULTS = ("stop_after", "close_after", "drop_twice", "close")


def scan_kinds(ns):
    """(name, run, relative axes, uses the detector): small scans of every kind, ~0.3-2 s each."""
    omega, x, z, d1, d2, pil = ns["omega"], ns["x"], ns["z"], ns["diode1"], ns["diode2"], ns["pilatus"]
    return [
        ("ascan", lambda: ns["ascan"](x, 0, 2, 20, 0.02, d1, d2), (), False),
        ("dscan", lambda: ns["dscan"](z, -1, 1, 20, 0.02, d1), (z,), False),
        ("a2scan", lambda: ns["a2scan"](x, 0, 1, z, 0, 1, 15, 0.02, d1), (), False),
        ("d2scan", lambda: ns["d2scan"](x, -0.5, 0.5, z, -0.5, 0.5, 15, 0.02, d1), (x, z), False),
        ("amesh", lambda: ns["amesh"](x, 0, 1, 4, z, 0, 1, 3, 0.02, d1), (), False),
        ("timescan", lambda: ns["timescan"](0.02, d1, npoints=40), (), False),
        ("fscan", lambda: ns["fscan"](omega, 0.0, 2.0, 100, 0.01, pil), (), True),
        ("xrdct", lambda: ns["xrdct"](omega, x, z, -1, 1, 6, [0.0, 0.5], 0.01, n_omega=40), (), True),
    ]


def kill_redis():
    """SIGKILL the run directory's private Redis (the scan must go on, then republish)."""
    import os
    import signal

    from bliss_lite.config.paths import run_dir
    from bliss_lite.data.redis_server import server_status

    pid = server_status(run_dir()).get("pid")
    if pid:
        os.kill(int(pid), signal.SIGKILL)


def _later(timers, delay, call, *args, **kwargs):
    """call(...) after `delay` unless the scan returns first; the timer joins `timers`."""
    import gevent

    timers.append(gevent.spawn_later(delay, call, *args, **kwargs))


def inject(ns, motors, rng, uses_detector, timers):
    """One random fault, armed now or after a random delay (its timer joins `timers`, killed
    when the scan returns: a fault never lands on the next scan); returns its name."""
    pil = ns["pilatus"]
    if rng.random() < 0.15:
        _later(timers, rng.uniform(0.1, 1.0), kill_redis)
        return "redis:kill"
    if uses_detector and rng.random() < 0.5:
        kind = rng.choice(DETECTOR_FAULTS)
        if kind == "stop_after":
            pil.inject(stop_after=rng.randrange(5, 100))
        elif kind == "close_after":
            pil.inject(close_after=rng.randrange(5, 100))
        elif kind == "drop_twice":
            pil.inject(drop=[rng.randrange(1, 50)], twice=[rng.randrange(1, 50)])
        else:
            _later(timers, rng.uniform(0.1, 1.0), pil.inject, close=True)
        return f"detector:{kind}"
    kind = rng.choice(MOTOR_FAULTS)
    axis = rng.choice(["x", "z", "omega"])
    line = {"fault": f"fault {axis}", "stall": f"stall {axis}", "silent": "silent", "garble": "garble 1",
            "drop": "drop", "delay": "delay 0.8",
            "limit": f"limit {axis} none {rng.choice([5000, 8000])}"}[kind]
    delay = 0.0 if kind == "limit" else rng.uniform(0.05, 1.0)
    _later(timers, delay, motors.send, f"INJECT {line}")
    return f"motor:{kind}"


def check_file(scan):
    """(corrupt, points lost): the entry opens, has the scan's end_reason, and every channel
    holds every point the scan took."""
    import h5py

    if scan.filename is None or scan.entry is None:
        return 0, 0
    data = scan.data.get_data([n for n, b in scan.data.buffers.items() if b.complete_in_memory])
    try:
        with h5py.File(scan.filename, "r", locking=False) as h5:
            entry = h5[scan.entry]
            if entry["end_reason"][()].decode() != scan.end_reason:
                return 1, 0
            lost = sum(max(0, len(values) - len(entry[f"measurement/{name}"])) for name, values in data.items())
    except (OSError, KeyError):
        return 1, 0
    return 0, lost


def check_redis(client, scan):
    """(unsealed, scalar points in the file but not in Redis) for a published scan."""
    from bliss_lite.data.client import ScanReader

    if scan.key is None:
        return 1, 0  # never published (Redis was there when the run started)
    try:
        reader = ScanReader(client, scan.key)
        if (reader.state, reader.end_reason) != ("CLOSED", scan.end_reason):
            return 1, 0
        data = scan.get_data()
        lost = sum(max(0, len(data[n]) - len(reader.read(n))) for n, spec in reader.channels.items()
                   if spec.encoding == "raw")
        return 0, lost
    except Exception:  # noqa: BLE001 - an unreadable record counts as unsealed
        return 1, 0


def moving(motors, names):
    import gevent

    first = {n: motors.send(f"POS {n}") for n in names}
    gevent.sleep(0.05)
    return sum(motors.send(f"STATE {n}") == "OK MOVING" or motors.send(f"POS {n}") != first[n] for n in names)


SURVIVED = ("redis:kill", "detector:drop_twice")  # the scan goes on: docs/reliability.md
ALWAYS_FAIL = ("detector:stop_after", "detector:close_after")  # armed at once, N below every detector scan's frames


def expected_state(what, fault, fired, error, pressed_at, scan):
    """The end_reason the scan must have: `what` none/ctrl_c/fault/beam, `fault` its name,
    `fired` whether its timer went off before the scan returned, `error` what the scan raised,
    `pressed_at` the epoch of the Ctrl-C (None if none)."""
    if what == "ctrl_c" and fired and (scan.end_time is None or pressed_at <= scan.end_time):
        return "USER_ABORT"  # Ctrl-C during the scan (one during its cleanup is held, same end)
    if what == "fault" and fired and fault not in SURVIVED:
        if fault in ALWAYS_FAIL or (error is not None and not isinstance(error, KeyboardInterrupt)):
            return "FAILURE"  # a motor fault on an axis the scan no longer moves is not met
    return "SUCCESS"


def _ctrl_c(main, pressed):
    pressed.append(time.time())
    main.throw(KeyboardInterrupt)


def beam_loss(ns, ring, rng, timers):
    """Lose the beam at a random moment of the scan for a random time; the scan must wait,
    redo what the loss spoiled and end SUCCESS."""
    _later(timers, rng.uniform(0.05, 1.0), ring.lose_beam, rng.uniform(0.1, 0.6))
    return "beam:loss"


def coverage(scan):
    """(lines lost, lines doubled) of a scan that should hold every planned point once: step
    scans by their points in the file, continuous scans by their valid frames on the grid."""
    import h5py

    from bliss_lite.scans.resume import line_keys

    with h5py.File(scan.filename, "r", locking=False) as h5:
        m = h5[f"{scan.entry}/measurement"]
        valid_name = next((n for n in m if n.endswith("_valid")), None)
        if valid_name is None:
            taken = len(m[scan.plot_axis]) if scan.plot_axis in m else len(m["elapsed_time"])
            return max(0, scan.npoints - taken), max(0, taken - scan.npoints)
        valid = m[valid_name][()]
        info = scan.scan_info.get("xrdct")
        if info is None:
            taken = int(valid.sum())
            return int(taken < scan.npoints), int(taken > scan.npoints)
        keys = line_keys(info, *(m[a][:len(valid)][valid] for a in ("omega", "x", "z")))
    return grid_count(info, [keys])


def grid_count(info, key_sets):
    """(lines with a grid point missing, lines with a grid point twice) over key sets."""
    import numpy as np

    n_z, n_x, n_o = len(info["z_positions"]), int(info["n_x"]), int(info["n_omega"])
    shape = (n_z, n_x, n_o) if info["fast_axis"] == "omega" else (n_z, n_o, n_x)
    counts = np.zeros(shape, int)
    for iz, istep, ifast in key_sets:
        np.add.at(counts, (iz, istep, ifast), 1)
    return int((counts == 0).any(axis=2).sum()), int((counts > 1).any(axis=2).sum())


KILLED = """
import os, signal, sys, gevent
from bliss_lite.shell.runner import open_session
session, ns = open_session("test")
ns["SCAN_SAVING"].sample = sys.argv[1]
after = float(sys.argv[2])
gevent.spawn_later(after, os.kill, os.getpid(), signal.SIGKILL)
ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 6, [0.0, 0.5], 0.02, n_omega=40, hooks=[])
print("not killed", flush=True)
"""

RESUMED = """
import json, sys
from bliss_lite.shell.runner import open_session
session, ns = open_session("test")
scan = ns["resume_scan"](sys.argv[1], "1.1", hooks=[])
print(json.dumps({"entry": scan.entry, "end_reason": str(scan.end_reason)}), flush=True)
"""


def kill_and_resume(rng, index):
    """An xrdct killed with SIGKILL at a random moment, resumed by another process: (ok state,
    lines lost, lines doubled) over N.1 + N.2 (a scan done before the kill counts as one)."""
    import subprocess

    import h5py

    from bliss_lite.scans.resume import line_keys, recorded_info

    sample = f"killed{index}"
    killed = subprocess.run([sys.executable, "-c", KILLED, sample, str(rng.uniform(1.5, 5.0))],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    path = Path(os.environ["BLISS_LITE_DATA_ROOT"]) / "test" / f"{sample}.h5"
    entries = ["1.1"]
    ok = True
    if killed.returncode == -9:
        resumed = subprocess.run([sys.executable, "-c", RESUMED, str(path)], capture_output=True, text=True,
                                 timeout=120, cwd=ROOT)
        last = resumed.stdout.strip().splitlines()[-1:] or ["{}"]
        try:
            answer = json.loads(last[0])
        except ValueError:
            answer = {}
        ok = resumed.returncode == 0 and answer.get("end_reason") == "SUCCESS"
        if not ok:
            print(f"resume {sample} failed: {resumed.stderr[-800:]}", file=sys.stderr)
        entries.append(answer.get("entry", "1.2"))
    elif killed.returncode != 0:
        print(f"killed scan {sample} failed: {killed.stderr[-800:]}", file=sys.stderr)
        return False, 0, 0
    info = recorded_info(path, "1.1")["xrdct"]
    key_sets = []
    with h5py.File(path, "r", locking=False, swmr=True) as h5:
        for entry in entries:
            if entry not in h5:
                continue
            m = h5[f"{entry}/measurement"]
            valid = m["pilatus_valid"][()]
            key_sets.append(line_keys(info, *(m[a][:len(valid)][valid] for a in ("omega", "x", "z"))))
    lost, doubled = grid_count(info, key_sets) if key_sets else (1, 0)
    return ok, lost, doubled


def run(n_scans, seed, n_resumes=0):
    import gevent

    from bliss_lite.data.redis_server import connect
    from bliss_lite.shell.runner import open_session
    from simulators.processes import SimulatorProcess, write_remote_config

    rng = random.Random(seed)
    from bliss_lite.controllers.storage_ring import RingCurrent, StorageRing
    from bliss_lite.scans.suspenders import suspend_when

    totals = dict(scans=0, faults=0, interrupts=0, clean=0, failures=0, motors_left_moving=0, corrupt_files=0,
                  points_lost=0, hangs=0, unsealed=0, unnamed_errors=0, not_returned=0, beam_losses=0,
                  resumes=0, lines_lost=0, lines_doubled=0, wrong_state=0)
    ring = StorageRing("chaos_ring", current=200, refill_s=0.2)
    floor = suspend_when(RingCurrent("ring_current", ring), below=10, resume_above=150, settle_s=0.1)
    kinds_run, fault_kinds = {}, {}
    with SimulatorProcess.motor() as motors, SimulatorProcess.pilatus() as pilatus:
        root = write_remote_config(Path(tempfile.mkdtemp(prefix="chaos_cfg_")), motors.port, pilatus.port,
                                   timeout=0.5, stall_timeout=0.3)
        session, ns = open_session("remote", root)
        names = ("omega", "x", "z", "pilatus")
        ns["mv"](ns["x"], 0, ns["z"], 0)
        url = session.scan_context.redis.url()
        kinds = scan_kinds(ns)
        session.scan_context.suspenders[:] = [floor]  # every scan waits for the beam
        main = gevent.getcurrent()
        t_start = time.perf_counter()
        for _ in range(n_scans):
            name, call, relative, uses_detector = rng.choice(kinds)
            kinds_run[name] = kinds_run.get(name, 0) + 1
            what = rng.choices(["none", "ctrl_c", "fault", "beam"], weights=[1, 2, 3, 2])[0]
            fault = None
            before = {a.name: a.position for a in relative}
            timers, pressed = [], []
            if what == "ctrl_c":
                _later(timers, rng.uniform(0.1, 1.2), _ctrl_c, main, pressed)
            elif what == "fault":
                fault = inject(ns, motors, rng, uses_detector, timers)
            elif what == "beam":
                fault = beam_loss(ns, ring, rng, timers)
            count = len(ns["SCANS"])
            error = None
            try:
                with gevent.Timeout(HANG_S, TimeoutError("hang")):
                    call()
            except TimeoutError as exc:
                if str(exc) == "hang":
                    totals["hangs"] += 1
                error = exc
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - what chaos is for
                error = exc
            finally:
                unfired = sum(not t.started and not t.dead for t in timers)
                gevent.killall(timers)
            totals["scans"] += 1
            if not unfired and what == "fault":  # a scan that ended before its fault had none
                totals["faults"] += 1
                fault_kinds[fault] = fault_kinds.get(fault, 0) + 1
            elif not unfired and what == "ctrl_c":
                totals["interrupts"] += 1
            elif not unfired and what == "beam":
                totals["beam_losses"] += 1
            if error is None:
                totals["clean"] += 1
            elif not isinstance(error, KeyboardInterrupt):
                totals["failures"] += 1
                if str(error).split(":")[0] not in (*names, name, "diode1", "diode2"):
                    totals["unnamed_errors"] += 1
                    print(f"unnamed error in {name}: {error!r}", file=sys.stderr)
            motors.send("INJECT clear")
            ns["pilatus"].close()  # a fresh link, no fault, for the next scan
            left = moving(motors, names[:3])
            if left:
                print(f"left moving after {name} ({what} {fault if what == 'fault' else ''}): {error!r}",
                      file=sys.stderr)
            totals["motors_left_moving"] += left
            scan = ns["SCANS"][-1] if len(ns["SCANS"]) > count else None
            if scan is not None:
                corrupt, lost = check_file(scan)
                unsealed, lost_redis = check_redis(connect(url), scan)
                totals["corrupt_files"] += corrupt
                totals["points_lost"] += lost + lost_redis
                totals["unsealed"] += unsealed
                if isinstance(error, KeyboardInterrupt) and relative and scan.end_reason == "USER_ABORT":
                    totals["not_returned"] += any(abs(a.position - before[a.name]) > 1e-4 for a in relative)
                expected = expected_state(what, fault, not unfired, error, pressed[0] if pressed else None, scan)
                if not corrupt and scan.end_reason != expected:
                    totals["wrong_state"] += 1
                    print(f"{name} with {what} {fault or ''}: {scan.end_reason}, not {expected} ({error!r})",
                          file=sys.stderr)
                elif what in ("beam", "none") and not corrupt:  # nothing else wrong: every point once
                    lost, doubled = coverage(scan)
                    totals["lines_lost"] += lost
                    totals["lines_doubled"] += doubled
            for axis in (ns["x"], ns["z"]):  # some faults leave axes anywhere: start the next from 0
                try:
                    axis.sync_hard()
                    ns["mv"](axis, 0)
                except Exception as exc:  # noqa: BLE001
                    print(f"could not reset {axis.name}: {exc}", file=sys.stderr)
        session.close()
    for index in range(n_resumes):
        ok, lost, doubled = kill_and_resume(rng, index)
        totals["resumes"] += 1
        totals["wrong_state"] += not ok
        totals["lines_lost"] += lost
        totals["lines_doubled"] += doubled
    elapsed = time.perf_counter() - t_start
    return {"benchmark": "chaos", **totals, "kinds": kinds_run, "fault_kinds": fault_kinds, "seed": seed, "elapsed_s": round(elapsed, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resumes", type=int, default=10, help="xrdct scans killed with SIGKILL and resumed")
    args = parser.parse_args()
    with private_environment("chaos_"), open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        result = run(args.scans, args.seed, args.resumes)  # the scans' tables would bury the one JSON line
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

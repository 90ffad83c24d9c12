"""The interactive shell (ptpython on gevent) driven through a pseudo-terminal with pexpect.

The typed line is echoed back (with syntax-highlighting escapes), so results are looked for
with markers that the echo cannot contain (values computed at run time).
"""
from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

CONFIG = str(Path(__file__).parents[1] / "config")
PROMPT = r"test \[\d+\]: "
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def strip(text):
    return ANSI.sub("", text)


@pytest.fixture
def shell(run_dir):
    yield from _shell(run_dir)


@pytest.fixture
def scan_shell(run_dir, data_root, shared_redis):
    yield from _shell(run_dir, BLISS_LITE_DATA_ROOT=str(data_root), BLISS_LITE_REDIS_URL=shared_redis)


def _shell(run_dir, **extra_env):
    env = dict(os.environ)
    env.pop("BLISS_LITE_CONFIG", None)
    env.update(PROMPT_TOOLKIT_NO_CPR="1", BLISS_LITE_RUN_DIR=str(run_dir), TERM="xterm", **extra_env)
    child = pexpect.spawn(sys.executable, ["-m", "bliss_lite", "-s", "test", "--config", CONFIG],
                          encoding="utf-8", timeout=20, dimensions=(40, 160), env=env)
    child.logfile_read = io.StringIO()  # everything the shell wrote, for assertions and failures
    try:
        child.expect(PROMPT)
        child.first_prompt = strip(child.before + child.after)
        yield child
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)


def run(child, line, marker):
    """Type `line`, wait for `marker` (a regex the echo cannot match), then for the next prompt.

    Returns (match, text): the marker's match object and the ANSI-stripped output from the
    marker to the prompt.
    """
    child.sendline(line)
    child.expect(marker)
    match = child.match
    head = strip(child.after)
    child.expect(PROMPT)
    return match, head + strip(child.before)


def prompt_after(child, needle, max_prompts=10):
    """Wait for prompts until the text shown before one of them contains `needle` (plain text,
    for output that is syntax-highlighted, e.g. tracebacks); return that text, ANSI-stripped."""
    seen = ""
    for _ in range(max_prompts):
        child.expect(PROMPT)
        seen += strip(child.before)
        if needle in seen:
            return seen
    raise AssertionError(f"{needle!r} not shown; got {seen!r}")


def axis_state(child):
    match, _ = run(child, "print('STATE', m0.state, 'POS', round(m0.position, 3))",
                   r"STATE (\w+) POS (-?\d+(?:\.\d+)?)")
    return match.group(1), float(match.group(2))


def test_prompt_and_session_globals(shell):
    assert shell.first_prompt.endswith("test [1]: ")
    # lines kept shorter than the terminal width (no wrapping of the echo)
    for names in ("m0 m1 m2 m3 diode1 diode2 diode3 gauss test_mg omega x z SETUP_DONE",
                  "umv umvr mv mvr wa wm sta sync lsmot lscnt lsmg"):
        match, _ = run(shell, f"print('MISSING', [n for n in {names!r}.split() if n not in globals()])",
                       r"MISSING (\[.*?\])")
        assert match.group(1) == "[]"
    match, _ = run(shell, "print('SETUP', SETUP_DONE, 'DIODE', type(diode1).__name__ != '')", r"SETUP (\w+) DIODE (\w+)")
    assert match.groups() == ("True", "True")
    match, _ = run(shell, "print('TYPE', type(m0).__name__, m0.name.upper())", r"TYPE (\w+) (M0)")
    assert match.group(1) == "Axis"
    # the prompt counts statements
    shell.sendline("print('N', 40 + 2)")
    shell.expect(r"N 42")
    shell.expect(PROMPT)
    assert re.fullmatch(r"test \[(\d+)\]: ", strip(shell.after))
    assert int(re.search(r"\d+", shell.after).group()) >= 3


def parse_wa(text):
    """{axis header: (user, dial)} from the text of wa()."""
    lines = text.splitlines()
    result = {}
    for i, line in enumerate(lines[:-3]):
        if lines[i + 1].strip() and set(lines[i + 1].strip()) <= {"-", " "} and line.strip():
            headers = line.split()
            user = lines[i + 2].split()
            dial = lines[i + 3].split()
            assert len(headers) == len(user) == len(dial), (line, lines[i + 2], lines[i + 3])
            for h, u, d in zip(headers, user, dial):
                result[h] = (u, d)
    return result


def test_umv_then_wa(shell):
    _, text = run(shell, "umv(m0, 2.5)", r"2\.50000")
    match, _ = run(shell, "print('POS', 2 * m0.position)", r"POS (\S+)")
    assert float(match.group(1)) == 5.0
    shell.sendline("wa()")
    shell.expect("Current Positions: user")
    shell.expect(PROMPT)
    table = strip(shell.before)
    positions = parse_wa(table)
    assert positions["m0"] == ("2.50000", "2.50000"), table
    assert positions["m1"] == ("0.00000", "0.00000"), table
    assert set(positions) >= {"m0", "m1", "m2", "m3", "omega[deg]", "x[mm]", "z[mm]"}


def test_ctrl_c_stops_a_slow_move(shell):
    run(shell, "m0.velocity = 1; m0.acceleration = 10; print('SLOW', m0.velocity * 3)", r"SLOW 3\.0")
    shell.sendline("umv(m0, 50)")
    time.sleep(1.0)
    shell.sendintr()
    shell.expect(r"umv interrupted: stopped m0 at (-?\d+\.\d+)")
    reported = float(shell.match.group(1))
    shell.expect(PROMPT)
    state, position = axis_state(shell)
    assert state == "READY"
    assert 0.3 < position < 10
    assert abs(position - reported) < 0.01
    time.sleep(0.5)
    state2, position2 = axis_state(shell)
    assert state2 == "READY"
    assert position2 == position  # nothing still moving
    # the shell still works and the axis moves again when asked
    run(shell, "m0.velocity = 1000; m0.acceleration = 100000; mv(m0, 3); print('AT', m0.position * 2)", r"AT 6\.0")


def test_ctrl_c_during_move_prints_no_hub_noise(shell):
    run(shell, "m0.velocity = 1; m0.acceleration = 10; print('SLOW', m0.velocity * 3)", r"SLOW 3\.0")
    start = len(shell.logfile_read.getvalue())
    shell.sendline("umv(m0, 50)")
    time.sleep(0.5)
    shell.sendintr()
    shell.expect(r"umv interrupted: stopped m0 at")
    shell.expect(PROMPT)
    shown = strip(shell.logfile_read.getvalue()[start:])
    assert not re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown, re.M), shown
    assert shown.count("KeyboardInterrupt") == 1, shown


def test_ctrl_c_at_idle_prompt_gives_fresh_line(shell):
    shell.send("print('NEVER', 1 + 1)")
    time.sleep(0.3)
    shell.sendintr()
    shell.expect(PROMPT)
    time.sleep(0.2)
    match, _ = run(shell, "print('ALIVE', 3 * 7)", r"ALIVE (\d+)")
    assert match.group(1) == "21"
    assert "NEVER 2" not in strip(shell.logfile_read.getvalue())


def test_axis_name_alone_shows_info(shell):
    shell.sendline("m0")
    shell.expect("AXIS m0:")
    shell.expect(PROMPT)
    info = strip(shell.before)
    assert re.search(r"position \(RW\): 0\.00000", info), info
    assert re.search(r"state \(R\): READY", info), info
    assert "velocity (RW): 1000.00000" in info


def test_error_in_command_keeps_shell_and_axis(shell):
    start = len(shell.logfile_read.getvalue())
    shell.sendline("umv(m0, 150)")
    text = prompt_after(shell, "LimitError: m0: target 150 beyond high limit 100")
    assert "Traceback" not in text  # one line, in red: the traceback is kept for last_error()
    raw = shell.logfile_read.getvalue()[start:]
    assert "\x1b[31mLimitError: m0: target 150 beyond high limit 100  (last_error() shows the traceback)" in raw
    state, position = axis_state(shell)
    assert (state, position) == ("READY", 0.0)
    shell.sendline("last_error()")
    text = prompt_after(shell, "Traceback (most recent call last)")
    assert "bliss_lite/controllers/motion.py" in text and text.rstrip().endswith(
        "LimitError: m0: target 150 beyond high limit 100")


def test_history_written_on_exit(shell, run_dir):
    run(shell, "print('HIST', 2 * 21)", r"HIST 42")
    shell.sendeof()
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0
    history = run_dir / "history" / "test"
    assert history.is_file()
    assert "print('HIST', 2 * 21)" in history.read_text(encoding="utf-8")


def test_tab_completes_attribute_names(shell):
    shell.send("print('V', m0.veloc")
    shell.expect("veloc")
    shell.send("\t")
    shell.expect("ity")  # the completion is shown before the line is finished
    shell.send(")\r")
    shell.expect(r"V 1000\.0")  # only the completed name `m0.velocity` prints this
    shell.expect(PROMPT)


def test_umv_refreshes_positions_while_moving(shell):
    run(shell, "m1.velocity = 2; m1.acceleration = 20; print('SLOW', m1.velocity * 3)", r"SLOW 6\.0")
    start = len(shell.logfile_read.getvalue())
    run(shell, "umv(m1, 2); print('AT', m1.position * 2)", r"AT 4\.0")
    raw = shell.logfile_read.getvalue()[start:]
    redraws = raw.count("\x1b[4F")  # the 4-line table redrawn in place
    assert 4 <= redraws <= 15  # ~1.1 s of motion at ~10 Hz (fewer on a loaded machine)
    users = [float(v) for v in re.findall(r"user\s+(-?\d+\.\d+)", strip(raw))]
    assert users[-1] == 2.0 and len(set(users)) >= 5  # intermediate positions, then the final one
    assert users == sorted(users)


def test_scan_table_then_ctrl_c_in_dscan_back_at_prompt_and_start(scan_shell):
    run(scan_shell, "mv(m0, 4); print('AT', m0.position * 2)", r"AT 8\.0")
    scan_shell.sendline("s = ascan(m0, 0, 2, 4, 0.01, gauss)")
    scan_shell.expect(r"Scan (\d+): 5 points, took [\d.]+ s, (\S+) entry (\d+\.1)")
    assert scan_shell.match.group(2).endswith("test/sample.h5")
    table = strip(scan_shell.before)
    rows = [line.split() for line in table.splitlines() if re.match(r"\s+\d+\s+[\d.e-]+\s", line)]
    assert [float(r[2]) for r in rows] == [0, 0.5, 1, 1.5, 2]
    scan_shell.expect(PROMPT)
    scan_shell.sendline("dscan(m0, -1, 1, 100, 0.05)")
    scan_shell.expect(r"\n\s+3\s")  # the fourth point is shown
    scan_shell.sendintr()
    # back at the prompt, or the test fails on the timeout (the time: benchmarks/interrupt.py)
    scan_shell.expect(r"Scan \d+ ABORTED by the user: \d+ points[\s\S]*?" + PROMPT, timeout=1.5)
    state, position = axis_state(scan_shell)
    assert (state, position) == ("READY", 2.0)  # back where the dscan started (the ascan's end)

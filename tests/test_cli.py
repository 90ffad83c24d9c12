"""The non-interactive CLI (`-c CODE`, `SCRIPT`) run as real subprocesses.

Each test gets its own run directory (BLISS_LITE_RUN_DIR = tmp_path/run), so persisted
settings (positions, offsets) never leak between tests or into the developer's home.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
CONFIG = REPO / "config"


@pytest.fixture
def cli(run_dir, tmp_path):
    """cli(*args, config=CONFIG) -> CompletedProcess of `python -m bliss_lite --config CONFIG *args`."""

    def _run(*args, config=CONFIG, cwd=None):
        env = dict(os.environ)
        env["BLISS_LITE_RUN_DIR"] = str(run_dir)
        env.pop("BLISS_LITE_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "bliss_lite", "--config", str(config), *args],
            env=env, cwd=str(cwd or tmp_path), capture_output=True, text=True, timeout=60,
        )

    return _run


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert lines, "no output"
    return lines[-1].strip()


def test_c_moves_and_prints_position(cli):
    proc = cli("-s", "test", "-c", "umv(m0, 1.5); print(m0.position)")
    assert proc.returncode == 0, proc.stderr
    assert last_line(proc.stdout) == "1.5"
    # umv shows the user/dial table of the moved axis
    assert "m0" in proc.stdout
    assert "1.50000" in proc.stdout


def test_position_and_offset_persist_across_processes(cli):
    first = cli("-s", "test", "-c",
                "umv(m0, 2.25); umv(m1, 3); m1.position = 10; "
                "print('M1', m1.position, m1.dial, m1.offset)")
    assert first.returncode == 0, first.stderr
    assert last_line(first.stdout) == "M1 10.0 3.0 7.0"

    second = cli("-s", "test", "-c", "print('POS', m0.position, m0.dial, m1.position, m1.dial, m1.offset)")
    assert second.returncode == 0, second.stderr
    assert last_line(second.stdout) == "POS 2.25 2.25 10.0 3.0 7.0"


def test_c_beyond_limit_exits_1_and_does_not_move(cli):
    before = cli("-s", "test", "-c", "umv(m0, 1); print('POS', m0.position, m1.position)")
    assert before.returncode == 0, before.stderr
    assert last_line(before.stdout) == "POS 1.0 0.0"

    # m1 is beyond its high limit (100): nothing moves, m0 included
    proc = cli("-s", "test", "-c", "umv(m0, 5, m1, 150)")
    assert proc.returncode == 1
    assert "m1" in proc.stderr
    assert "high limit" in proc.stderr
    assert "150" in proc.stderr

    proc = cli("-s", "test", "-c", "mv(m0, 150)")
    assert proc.returncode == 1
    assert "m0" in proc.stderr and "high limit" in proc.stderr

    after = cli("-s", "test", "-c", "print('POS', m0.position, m1.position)")
    assert after.returncode == 0, after.stderr
    assert last_line(after.stdout) == "POS 1.0 0.0"


def test_c_low_limit(cli):
    proc = cli("-s", "test", "-c", "umv(m2, -150)")
    assert proc.returncode == 1
    assert "m2" in proc.stderr and "low limit" in proc.stderr
    after = cli("-s", "test", "-c", "print('POS', m2.position)")
    assert last_line(after.stdout) == "POS 0.0"


def test_script_file(cli, tmp_path):
    script = tmp_path / "scan_script.py"
    script.write_text(
        "from pathlib import Path\n"
        "here = Path(__file__)\n"
        "print('FILE', here.name, here.is_absolute(), here.parent == Path(%r))\n"
        "mv(m2, 4)\n"
        "umvr(m2, -1.5)\n"
        "print('SETUP', SETUP_DONE)\n"
        "(here.parent / 'result.txt').write_text(f'{m2.position:.3f}')\n"
        "print('M2', m2.position)\n" % str(tmp_path.resolve()),
        encoding="utf-8",
    )
    proc = cli("-s", "test", str(script))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "FILE scan_script.py True True" in lines
    assert "SETUP True" in lines
    assert lines[-1] == "M2 2.5"
    assert (tmp_path / "result.txt").read_text() == "2.500"

    # the script's move persisted
    again = cli("-s", "test", "-c", "print('M2', m2.position)")
    assert last_line(again.stdout) == "M2 2.5"


def test_script_error_exits_1(cli, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("print('BEFORE')\nraise RuntimeError('boom from script')\n", encoding="utf-8")
    proc = cli("-s", "test", str(script))
    assert proc.returncode == 1
    assert "BEFORE" in proc.stdout
    assert "RuntimeError: boom from script" in proc.stderr
    assert "bad.py" in proc.stderr


def test_script_sys_exit_code(cli, tmp_path):
    script = tmp_path / "exit3.py"
    script.write_text("import sys\nsys.exit(3)\n", encoding="utf-8")
    assert cli("-s", "test", str(script)).returncode == 3


def test_missing_script_exits_2(cli, tmp_path):
    proc = cli("-s", "test", str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    assert "nope.py" in proc.stderr and "not found" in proc.stderr


def test_unknown_session_exits_2_and_lists_sessions(cli):
    proc = cli("-s", "nosuchsession", "-c", "print('RAN')")
    assert proc.returncode == 2
    assert "RAN" not in proc.stdout
    assert "nosuchsession" in proc.stderr
    assert "test" in proc.stderr and "demo" in proc.stderr
    assert "sessions:" in proc.stderr


def test_broken_config_names_file_line_and_key(cli, tmp_path):
    work = tmp_path / "broken"
    work.mkdir()
    shutil.copytree(CONFIG, work / "config")
    # the test session's setup-file is ../../sessions/test_setup.py, relative to its YAML
    shutil.copytree(REPO / "sessions", work / "sessions")
    motors = work / "config" / "test" / "motors.yml"
    lines = motors.read_text(encoding="utf-8").splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.strip().startswith("velocity:"))
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = f"{indent}velocity: fast\n"
    motors.write_text("".join(lines), encoding="utf-8")
    lineno = index + 1

    proc = cli("-s", "test", "-c", "print('RAN')", config=work / "config")
    assert proc.returncode == 2
    assert "RAN" not in proc.stdout
    assert f"motors.yml:{lineno}" in proc.stderr
    assert "velocity" in proc.stderr
    assert "fast" in proc.stderr
    assert "m0" in proc.stderr  # the first axis of test/motors.yml
    assert "Traceback" not in proc.stderr


def test_copied_config_works(cli, tmp_path):
    work = tmp_path / "copy"
    work.mkdir()
    shutil.copytree(CONFIG, work / "config")
    shutil.copytree(REPO / "sessions", work / "sessions")
    proc = cli("-s", "test", "-c", "print('OK', m0.velocity)", config=work / "config")
    assert proc.returncode == 0, proc.stderr
    assert last_line(proc.stdout) == "OK 1000.0"


def test_c_and_script_together_is_usage_error(cli, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('SCRIPT RAN')\n", encoding="utf-8")
    proc = cli("-s", "test", "-c", "print('CODE RAN')", str(script))
    assert proc.returncode == 2
    assert "RAN" not in proc.stdout
    assert "usage:" in proc.stderr
    assert "not both" in proc.stderr


def test_missing_session_option_is_usage_error(cli):
    proc = cli("-c", "print('RAN')")
    assert proc.returncode == 2
    assert "RAN" not in proc.stdout
    assert "-s SESSION" in proc.stderr


def test_job_server_is_a_subcommand(run_dir):
    proc = subprocess.run([sys.executable, "-m", "bliss_lite", "job-server", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: bliss-lite job-server")
    assert "--workers" in proc.stdout and "--max-jobs" in proc.stdout.replace("\n", "")


def test_exit_waits_for_moves_still_running(cli):
    started = cli("-s", "test", "-c", "m0.velocity = 20; m0.acceleration = 200; m0.move(3, wait=False); "
                                      "print('MOVING', m0.is_moving)")
    assert started.returncode == 0 and "MOVING True" in started.stdout
    after = cli("-s", "test", "-c", "print('AT', m0.position)")
    assert "AT 3.0" in after.stdout  # the move ended before exit, and its position was saved

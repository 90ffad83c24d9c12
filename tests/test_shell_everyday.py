"""The everyday shell (issue 20): what a user sees for counts, errors and help,
through a pseudo-terminal where it is about the interactive shell; `-c` and scripts as
processes."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.test_shell_pty import CONFIG, _shell, prompt_after

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


@pytest.fixture
def shell(run_dir):
    yield from _shell(run_dir)


@pytest.fixture
def scan_shell(run_dir, data_root, shared_redis):
    yield from _shell(run_dir, BLISS_LITE_DATA_ROOT=str(data_root), BLISS_LITE_REDIS_URL=shared_redis)


def output_of(child, line, needle):
    """Type `line`; the ANSI-stripped text shown up to the prompt after `needle`."""
    child.sendline(line)
    return prompt_after(child, needle)


def test_ct_shows_units_and_a_rate_for_integrating_counters_only(scan_shell):
    text = output_of(scan_shell, "ct(0.2, diode1, gauss, ring_current)", "count time 0.2 s")
    lines = {line.split("=")[0].strip(): line for line in text.splitlines() if " = " in line}
    assert re.fullmatch(r"\s+diode1 = +\d+\.?\d*", lines["diode1"]), lines  # sampled, no unit: no rate
    assert re.fullmatch(r"\s+ring_current = +\d+\.?\d* mA", lines["ring_current"]), lines  # ~200 mA, no rate
    assert 150 < float(lines["ring_current"].split("=")[1].split()[0]) < 250
    gauss = re.fullmatch(r"\s+gauss = +(\S+) counts +\( *(\S+) counts/s\)", lines["gauss"])
    assert gauss, lines["gauss"]
    assert float(gauss.group(2)) == pytest.approx(float(gauss.group(1)) / 0.2)


def test_a_typo_gets_close_names(shell):
    text = output_of(shell, "ascna(m0, 0, 1, 2, 0.1)", "is not defined")
    assert "NameError: name 'ascna' is not defined. Did you mean: ascan" in text
    assert "Traceback" not in text


def test_question_mark_and_help_show_the_signature_arguments_and_an_example(shell):
    text = output_of(shell, "ascan?", "Example: ascan(")
    assert "ascan(motor, start, stop, intervals, count_time, *counters, save=True" in text
    assert "in the axis's unit" in text and "count_time: seconds per point" in text
    text = output_of(shell, "m0?", "MOCKUP AXIS")  # an object: its summary
    assert "position (RW)" in text
    text = output_of(shell, "help()", "Commands (help(name)")
    assert re.search(r"^\s+umv\s+\S", text, re.M) and re.search(r"^\s+ascan\s+Step `motor`", text, re.M)


def bliss_lite(run_dir, *args):
    env = {**os.environ, "BLISS_LITE_RUN_DIR": str(run_dir)}
    env.pop("BLISS_LITE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "bliss_lite", "--config", CONFIG, "-s", "test", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_c_and_scripts_say_an_error_in_one_line_and_keep_the_traceback(run_dir, tmp_path):
    failed = bliss_lite(run_dir, "-c", "ascan(m0, 0, 150, 3, 0.1)")
    kept = run_dir / "errors" / "test.txt"
    assert failed.returncode == 1
    assert failed.stderr == f"LimitError: ascan: m0: target 150 beyond high limit 100  (traceback: {kept})\n"
    shown = bliss_lite(run_dir, "-c", "last_error()")
    assert shown.returncode == 0 and shown.stdout.startswith("Traceback (most recent call last)")
    assert shown.stdout.rstrip().endswith("LimitError: ascan: m0: target 150 beyond high limit 100")
    script = tmp_path / "align.py"
    script.write_text("x = 1\numv(m0, 500)\n", encoding="utf-8")
    failed = bliss_lite(run_dir, str(script))
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [f"align.py, line 2: LimitError: m0: target 500 beyond high limit 100  "
                                          f"(traceback: {kept})"]

"""The everyday shell (issue 20): what a user sees for counts, errors, help and peak tools,
through a pseudo-terminal where it is about the interactive shell; `-c` and scripts as
processes."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.test_shell_pty import CONFIG, _shell, prompt_after, run

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
    text = output_of(shell, "help(goto_cen)", "Example: goto_cen()")
    assert "goto_cen(counter=None, axis=None)" in text
    text = output_of(shell, "umv?", "Example: umv(")
    assert "umv(*args)" in text and "in the axis's user unit" in text
    text = output_of(shell, "m0?", "MOCKUP AXIS")  # an object: its summary
    assert "position (RW)" in text
    text = output_of(shell, "help()", "Commands (help(name)")
    assert re.search(r"^\s+umv\s+\S", text, re.M) and re.search(r"^\s+ascan\s+Step `motor`", text, re.M)


# every everyday command: help shows its arguments, their units where it has positions, and an example
HELPED = {"mv": True, "mvr": True, "umv": True, "umvr": True, "wa": True, "wm": True, "sta": False, "sync": False,
          "lsmot": False, "lscnt": True, "lsmg": False, "lookupscan": True, "pointscan": True, "goto_peak": False,
          "goto_com": False, "fscan": True, "xrdct": True, "resume_scan": False, "plotselect": False}


def test_help_of_every_everyday_command_names_its_arguments_and_gives_an_example(test_session):
    import inspect

    from bliss_lite.shell.help import describe

    for name, has_units in HELPED.items():
        command = test_session[name]
        text = describe(command)
        assert text.startswith(f"{name}({str(inspect.signature(command))[1:]}"), text  # the signature
        doc = inspect.getdoc(command)
        assert re.search(rf"^Example: {name}\(", doc, re.M), f"{name}: no example in {doc!r}"
        assert len(doc.splitlines()) >= 3, f"{name}: a one-line docstring"
        given = [p.name for p in inspect.signature(command).parameters.values()
                 if p.name != "args" and (p.kind == p.VAR_POSITIONAL or (p.kind == p.POSITIONAL_OR_KEYWORD
                                                                         and p.default is p.empty))]
        for argument in given:  # every argument a user must give is explained
            assert re.search(rf"\b{argument}\b", doc), f"{name}: argument {argument} not in {doc!r}"
        if has_units:
            assert "unit" in doc, f"{name}: no unit in {doc!r}"


def test_peak_tools_say_what_they_used_and_goto_says_where_it_went(scan_shell):
    run(scan_shell, "s = ascan(m0, 3.13, 7.0, 37, 0.01, gauss); print('DONE', 2 * len(s.get_data()['m0']))",
        r"DONE 76")
    text = output_of(scan_shell, "cen()", "cen: m0 = ")
    found = re.search(r"cen: m0 = (\d+\.\d{4}) \(gauss, fwhm (\d+\.\d{4})\)", text)
    assert found, text
    centre, width = float(found.group(1)), float(found.group(2))
    assert centre == pytest.approx(5.0, abs=0.01) and width == pytest.approx(1.0, abs=0.05)
    text = output_of(scan_shell, "goto_cen()", "goto_cen: m0 = ")
    went = re.search(r"goto_cen: m0 = (\d+\.\d{4}) \(cen: m0 = (\d+\.\d{4})", text)
    assert went and went.group(2) == found.group(1), text
    match, _ = run(scan_shell, "print('POS', m0.position * 1)", r"POS (\S+)")
    assert float(went.group(1)) == float(match.group(1))  # the value shown is where the axis is
    assert float(match.group(1)) == round(float(match.group(1)), 3)  # on a step of m0 (1000 per unit)
    text = output_of(scan_shell, "fwhm()", "fwhm: ")
    assert re.search(r"fwhm: \d\.\d{4} \(gauss along m0, cen \d\.\d{4}\)", text), text


def test_a_flat_counter_says_why(scan_session):
    ns = scan_session
    ns["ascan"](ns["m0"], 0, 1, 4, 0, ns["gauss"])
    with pytest.raises(ValueError, match=r"cen: gauss is flat in scan \d+ \(0 at every point\) \(count time 0: "
                                         r"an integrating counter counts nothing"):
        ns["cen"]()


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

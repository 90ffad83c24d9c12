"""Bad input on the command line and in job files: `bliss-lite` answers with one clear line and a
non-zero exit code (2 for usage and configuration, 1 for a job that failed), never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bliss_lite.processing.jobs import Job, JobError

CONFIG = Path(__file__).parents[1] / "config"


def nested(depth):
    return "[" * depth + "]" * depth


def job_text(input):
    return json.dumps({"plugin": "dummy", "input": input})


FILES = {  # name -> content written in the test's folder
    "good.json": job_text({"a": [1]}),
    "oops.json": "{oops",
    "deep_json.json": '{"plugin": "dummy", "input": {"x": ' + nested(100_000) + "}}",
    "deep_input.json": '{"plugin": "dummy", "input": {"x": ' + nested(600) + "}}",
    "failing.json": json.dumps({"plugin": "sleep", "input": {"seconds": -1}}),
    "latin1.py": b"x = '\xe9'\n",
    "evil/evil.yml": "- name: x\n  class: !!python/object/apply:os.system ['true']\n",
}

CASES = [  # (arguments, environment, exit code, what one line of stderr says)
    ([], {}, 2, "give a session with -s SESSION"),
    (["-s", "test", "--config", "/nonexistent", "-c", "1"], {}, 2,
     "configuration error: --config: configuration directory '/nonexistent' does not exist"),
    (["-s", "test", "--config", "{tmp}/evil", "-c", "1"], {}, 2,
     "configuration error: evil.yml:2: unsupported YAML: could not determine a constructor for the tag"),
    (["-s", "test", "{tmp}/latin1.py"], {}, 2, "script '{tmp}/latin1.py' cannot be read: 'utf-8' codec"),
    (["-s", "test", "{tmp}"], {}, 2, "script '{tmp}' not found"),
    (["-s", "test", "-c", "1"], {"BLISS_LITE_RUN_DIR": "{tmp}/good.json"}, 2,
     "configuration error: BLISS_LITE_RUN_DIR: cannot create '{tmp}/good.json': File exists"),
    (["server", "status"], {"BLISS_LITE_RUN_DIR": "{tmp}/good.json"}, 2,
     "configuration error: BLISS_LITE_RUN_DIR: cannot create '{tmp}/good.json': File exists"),
    (["server", "restart"], {}, 2, "argument action: invalid choice: 'restart'"),
    (["follow", "--timeout", "nan"], {}, 2, "--timeout must be a number of seconds > 0, got nan"),
    (["follow", "--timeout", "-1"], {}, 2, "--timeout must be a number of seconds > 0, got -1.0"),
    (["follow", "--count", "0"], {}, 2, "--count must be >= 1, got 0"),
    (["reprocess"], {}, 2, "the following arguments are required: JOB.json"),
    (["reprocess", "{tmp}/missing.json"], {}, 2, "{tmp}/missing.json: cannot read: No such file or directory"),
    (["reprocess", "{tmp}/oops.json"], {}, 2, "{tmp}/oops.json: not JSON: Expecting property name"),
    (["reprocess", "{tmp}/deep_json.json"], {}, 2, "{tmp}/deep_json.json: not a job: JSON nested too deeply"),
    (["reprocess", "{tmp}/deep_input.json"], {}, 2,
     "{tmp}/deep_input.json: field 'input' is nested more than 100 deep"),
    (["reprocess", "{tmp}/good.json", "--set", "novalue"], {}, 2, "--set 'novalue': expected key=value"),
    (["reprocess", "{tmp}/good.json", "--set", "a.b=1"], {}, 2, "--set a.b: a is not an object (list)"),
    (["reprocess", "{tmp}/good.json", "--set", "x=" + nested(5000)], {}, 2, "--set x: value nested too deeply"),
    # parsed by any JSON decoder, yet deeper than a job may nest (Python 3.12 once wrote the job first)
    (["reprocess", "{tmp}/good.json", "--set", "a.x=" + nested(120)], {}, 2,
     "--set a.x: value nested too deeply (a job nests at most 100 deep)"),
    (["reprocess", "{tmp}/good.json", "--output", "{tmp}/good.json"], {}, 2, "--output {tmp}/good.json: File exists"),
    (["worker", "--redis", "notaurl"], {}, 1, "cannot reach Redis"),
    (["demo", "--nx", "many"], {}, 2, "argument --nx: invalid int value: 'many'"),
]


@pytest.fixture
def bad_files(tmp_path):
    for name, content in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


def bliss_lite(tmp_path, args, env=()):
    environment = {**os.environ, "BLISS_LITE_RUN_DIR": str(tmp_path / "run"), **dict(env)}
    environment.pop("BLISS_LITE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "bliss_lite", *args], env=environment, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, env, code, message", CASES, ids=[" ".join(c[0])[:40] or "no-args" for c in CASES])
def test_bad_command_lines_give_one_line_and_an_exit_code(bad_files, args, env, code, message):
    fill = lambda text: text.replace("{tmp}", str(bad_files))  # noqa: E731
    proc = bliss_lite(bad_files, [fill(a) for a in args], {k: fill(v) for k, v in env.items()})
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    said = [line for line in proc.stderr.splitlines() if fill(message) in line]
    assert said and said[0].startswith("bliss-lite"), proc.stderr  # one line, said by the program


def test_a_failing_job_is_one_line_and_its_traceback_is_in_the_file(bad_files):
    proc = bliss_lite(bad_files, ["reprocess", str(bad_files / "failing.json")])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    target = bad_files / "failing.reprocessed.json"
    line, = proc.stdout.strip().splitlines()
    assert line.startswith(f"{bad_files / 'failing.json'} -> {target}: sleep failure in ")
    assert line.endswith(f"ValueError: sleep: seconds must be >= 0, got -1 (traceback in {target})")
    saved = Job.load(target)
    assert saved.status == "failure" and saved.traceback.startswith("Traceback")


# -- job records: any JSON is a Job or a JobError ----------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3),
                           max_leaves=12)
job_like = st.fixed_dictionaries({}, optional={
    "plugin": st.one_of(st.sampled_from(["dummy", "sleep", ""]), json_values),
    "input": st.one_of(st.dictionaries(st.text(max_size=6), json_values, max_size=3), json_values),
    "id": st.one_of(st.text(max_size=8), json_values), "status": st.one_of(st.sampled_from(["created", "done"]),
                                                                           json_values),
    "output": json_values, "error": json_values, "traceback": json_values, "reprocessed_from": json_values,
    "timings": st.one_of(st.dictionaries(st.sampled_from(["created", "started", "finished", "seconds"]), json_values),
                         json_values)})


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(job_like, json_values))
def test_any_json_is_a_job_or_a_job_error(data):
    text = json.dumps(data)
    try:
        job = Job.from_json(text, source="fuzz.json")
    except JobError as exc:
        assert str(exc).startswith("fuzz.json: ") and "\n" not in str(exc)
        return
    assert (job.plugin, job.input) == (data["plugin"], data["input"])
    assert isinstance(job.plugin, str) and job.plugin and isinstance(job.input, dict)
    assert Job.from_json(job.to_json(), source="again").to_dict() == job.to_dict()  # what is saved loads back

"""Files named by jobs, configuration and Redis: refused before anything reads them when they are
devices, FIFOs, directories, huge or of another kind; jobs served through Redis name only
paths below the server's roots and plain entry names.

Every reader that takes a path from outside is given the same hostile files; each must answer
with one line naming the file, at once (a FIFO would block a reader, a device never ends).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import redis
from conftest import write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bliss_lite.config import Config
from bliss_lite.config.errors import ConfigError
from bliss_lite.config.file_checks import LIMITS, FileCheckError, plain_name, within_roots
from bliss_lite.config.session import SessionSetupError
from bliss_lite.config.settings import SettingsStore
from bliss_lite.config.yaml_loader import load_yaml_file
from bliss_lite.controllers.sample.diffraction import load_geometry
from bliss_lite.data.queue_items import ItemError
from bliss_lite.processing import job_server
from bliss_lite.processing.integration_settings import IntegrationSettings
from bliss_lite.processing.integrator import load_image
from bliss_lite.processing.job_paths import check_job_input
from bliss_lite.processing.jobs import Job, JobError
from bliss_lite.shell.queue_commands import prepare


def session_setup(path, work):
    """The session whose `setup-file` is `path`, as configured in the folder `work`."""
    root = work / f"config_{path.name}"
    files = {"s.yml": f"- name: s\n  class: session\n  config-objects: []\n  setup-file: {path}\n"}
    return Config(write_config(root, files), SettingsStore(root / "run")).get("s")


def queue_script(path, work):
    """`script('<name>.py')` queued from a folder of `work` where that name links to `path`."""
    folder = work / f"scripts_{path.name}"
    folder.mkdir(parents=True)
    (folder / f"{path.name}.py").symlink_to(path)
    return prepare(f"script('{path.name}.py')", {}, {}, scripts=folder)


READERS = {  # option -> (read it (path, a folder to work in), the kind of file, the errors it may raise)
    "integration poni": (lambda p, _: IntegrationSettings.from_poni(p), "poni", ValueError),
    "sample poni": (lambda p, _: load_geometry(p), "poni", ValueError),
    "dark image": (lambda p, _: load_image(p, (10, 10), "dark"), "image", ValueError),
    "job file": (lambda p, _: Job.load(p), "job", JobError),
    "configuration file": (lambda p, _: load_yaml_file(p), "yaml", ConfigError),
    "session setup file": (session_setup, "script", ConfigError),
    "queue script": (queue_script, "script", ItemError),
}


def hostile(tmp_path, kind, what):
    path = tmp_path / f"{kind}.{what}"
    if what == "fifo":
        os.mkfifo(path)
    elif what == "device":
        return Path("/dev/zero")
    elif what == "directory":
        path.mkdir()
    elif what == "huge":  # sparse: a terabyte-sized file costs no disk
        with open(path, "wb") as f:
            f.truncate(LIMITS[kind] + 1)
    return path


@pytest.mark.parametrize("what", ["fifo", "device", "directory", "huge"])
@pytest.mark.parametrize("option", sorted(READERS))
def test_every_path_option_refuses_what_is_not_a_bounded_regular_file(tmp_path, option, what):
    read, kind, error = READERS[option]
    path = hostile(tmp_path, kind, what)
    done = {}

    def attempt():
        try:
            read(path, tmp_path / "work")
        except Exception as exc:  # noqa: BLE001 - the kind is asserted below
            done["error"] = exc

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # unblock a reader stuck on the FIFO before failing
        os.open(path, os.O_WRONLY | os.O_NONBLOCK) if what == "fifo" else None
        pytest.fail(f"{option}: reading a {what} did not return")
    exc = done["error"]
    assert isinstance(exc, error), repr(exc)
    message = str(exc)
    assert str(path.name) in message and "\n" not in message
    assert ("not a regular file" in message) if what != "huge" else ("more than a" in message)


@pytest.mark.parametrize("what", ["fifo", "huge"])
def test_a_setup_file_or_queue_script_changed_after_its_check_is_refused_when_run(tmp_path, what):
    """Checked when configured or queued, and again when read: the file may be replaced between."""
    setup, script = tmp_path / "setup.py", tmp_path / "align.py"
    setup.write_text("SET_UP = True\n")
    script.write_text("ALIGNED = True\n")
    session, item = session_setup(setup, tmp_path), queue_script(script, tmp_path)
    for path in (setup, script):
        path.unlink()
        hostile(tmp_path, "script", what).rename(path)
    with pytest.raises(SessionSetupError) as error:  # a FIFO would block here without the check
        session.setup({})
    reason = ("not a regular file (a directory, device or FIFO)" if what == "fifo"
              else f"{LIMITS['script'] + 1} bytes, more than a script file may be (4 MiB)")
    assert str(error.value) == f"session 's': setup file {setup}: {reason}"
    with pytest.raises(ItemError) as error:
        item.run()
    assert str(error.value) == f"script: {tmp_path / 'scripts_align.py' / 'align.py.py'}: {reason}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_a_poni_path_naming_a_file_of_another_kind_is_one_clear_line(tmp_path, content):
    path = tmp_path / "geometry.poni"
    path.write_bytes(content)
    try:
        IntegrationSettings.from_poni(path)
    except ValueError as exc:
        assert f"PONI file {path}" in str(exc) and "\n" not in str(exc)
    else:  # only a real PONI (Distance, Poni1, Poni2 lines) passes
        keys = {line.split(":")[0].strip().lower() for line in content.decode().splitlines() if ":" in line}
        assert {"distance", "poni1", "poni2"} <= keys


@given(name=st.text(max_size=30))
def test_entry_names_are_plain_or_refused(name):
    try:
        assert plain_name(name, "entry") == name
    except FileCheckError as exc:
        assert repr(name) in str(exc)
    else:
        assert "/" not in name and name not in (".", "..") and not name.startswith(".") and "\0" not in name


def test_paths_below_the_roots_only(tmp_path):
    root = tmp_path / "data"
    (root / "s").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    assert within_roots(root / "s" / "a.h5", [root], "filename") == (root / "s" / "a.h5").resolve()
    for bad in ["/etc/passwd", root / ".." / "elsewhere" / "a.h5", root / "link" / "a.h5", "/dev/zero"]:
        with pytest.raises(FileCheckError, match="outside the allowed roots"):
            within_roots(bad, [root], "filename")
    check_job_input({"filename": str(root / "s/a.h5"), "entry": "3.1", "output": {"entry": "4.1"}}, [root])
    with pytest.raises(FileCheckError, match=r"job input output\.entry must be a plain name"):
        check_job_input({"filename": str(root / "s/a.h5"), "output": {"entry": "../../x"}}, [root])
    with pytest.raises(FileCheckError, match=r"job input integration\.poni: /etc/passwd: outside"):
        check_job_input({"integration": {"poni": "/etc/passwd"}}, [root])


def test_a_job_pattern_or_list_of_paths_reaches_nothing_outside_the_roots(tmp_path):
    root = tmp_path / "data"
    (root / "s").mkdir(parents=True)
    (tmp_path / "secret.cbf").write_text("outside")
    (root / "s" / "img_0001.cbf").write_text("inside")
    folder = str(root / "s")
    check_job_input({"cbf_folder": folder, "pattern": "img_*.cbf"}, [root])
    check_job_input({"files": [folder + "/img_0001.cbf"], "labels": ["a/b", "c"]}, [root])
    for pattern in ["../../*.cbf", "../*", "..", "/etc/*", f"{tmp_path}/*.cbf", "s/*.cbf", ["*.cbf", "../*.cbf"]]:
        with pytest.raises(FileCheckError, match=r"job input pattern(\[1\])? must be a file-name pattern within "
                                                 r"the folder \(e\.g\. '\*\.cbf'; no '/', not '\.\.'") as error:
            check_job_input({"cbf_folder": folder, "pattern": pattern}, [root])
        assert repr(pattern if isinstance(pattern, str) else pattern[1]) in str(error.value)
    for data, where, path in [({"files": ["/etc/passwd"]}, "files[0]", "/etc/passwd"),
                              ({"filenames": [folder, "/etc/passwd"]}, "filenames[1]", "/etc/passwd"),
                              ({"frames": [[str(root / ".." / "secret.cbf")]]}, "frames[0][0]", "secret.cbf"),
                              ({"scans": [{"inputs": ["~/.ssh/id_rsa"]}]}, "scans[0].inputs[0]", "id_rsa")]:
        with pytest.raises(FileCheckError, match="outside the allowed roots") as error:
            check_job_input(data, [root])
        assert f"job input {where}: " in str(error.value) and path in str(error.value)
    (root / "s" / "img_0002.cbf").symlink_to(tmp_path / "secret.cbf")  # a link in the folder leads out
    for data, matched in [({"cbf_folder": folder, "pattern": "img_*.cbf"}, "(pattern='img_*.cbf' matched)"),
                          ({"integration": {"cbf_folder": folder}}, "(an entry of it)")]:
        with pytest.raises(FileCheckError, match="outside the allowed roots") as error:
            check_job_input(data, [root])
        assert f"cbf_folder {matched} {root / 's' / 'img_0002.cbf'}: " in str(error.value)


@pytest.fixture
def jobs_redis(shared_redis):
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    yield client
    client.flushdb()


def test_the_job_server_refuses_paths_outside_its_roots_and_serves_the_rest(jobs_redis, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    stop = threading.Event()
    thread = threading.Thread(target=job_server.serve, args=(jobs_redis, stop),
                              kwargs=dict(block_ms=20, log=lambda m: None, roots=[root]), daemon=True)
    thread.start()
    try:
        bad = [job_server.submit_remote(jobs_redis, "integrate_scan", {"filename": "/etc/passwd", "entry": "1.1"}),
               job_server.submit_remote(jobs_redis, "integrate_scan", {"cbf_folder": str(root), "output": {
                   "filename": str(root / "a.h5"), "entry": "../../x"}}),
               job_server.submit_remote(jobs_redis, "dummy", {"path": str(root / ".." / "escape")}),
               job_server.submit_remote(jobs_redis, "integrate_scan", {"cbf_folder": str(root),
                                                                       "pattern": "../*/*.cbf"})]
        good = job_server.submit_remote(jobs_redis, "dummy", {"npt": 7, "filename": str(root / "a.h5")})
        results = [job_server.wait_remote(jobs_redis, job_id, timeout=30) for job_id in bad]
        assert [r.status for r in results] == ["failure"] * 4
        assert "/etc/passwd: outside the allowed roots" in results[0].error
        assert "output.entry must be a plain name" in results[1].error
        assert "escape: outside the allowed roots" in results[2].error
        assert "job input pattern must be a file-name pattern within the folder" in results[3].error
        assert "got '../*/*.cbf'" in results[3].error
        assert job_server.wait_remote(jobs_redis, good, timeout=30).status == "success"
        assert not (tmp_path / "x").exists()
    finally:
        stop.set()
        thread.join(10)

"""Fixtures: the shipped configuration, with settings kept in a per-test run directory."""
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir
from leftovers import SessionProcesses

from bliss_lite.config import Config
from bliss_lite.config.settings import SettingsStore

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
SESSION_PROCESSES = SessionProcesses.start()  # before any test starts a process: see tests/leftovers.py
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "bliss_lite_hypothesis")  # no .hypothesis/ in the checkout


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running(tmp_path_factory):
    """At the end of the suite no process the tests started still runs: redis-servers (in pytest's
    temp dir or a /tmp/bl_* made with mkdtemp), workers, view, job and queue servers, Dask
    schedulers and workers, simulators. Those left are named, killed, and fail the run. Every
    other session fixture needs this one before it (directly or through
    private_default_run_dir), so this check runs after all of them have stopped their servers."""
    SESSION_PROCESSES.add_dir(tmp_path_factory.getbasetemp())
    yield
    from bliss_lite.processing.worker_pool import stop_all

    stop_all()  # the integration workers the scans kept for the next scan: stopped as at exit
    left = SESSION_PROCESSES.finish()
    assert not left, f"processes left running by the tests (now killed): {left}"


@pytest.fixture(scope="session", autouse=True)
def private_default_run_dir(nothing_left_running):
    """A run directory for the whole test session, so that processes started without one of
    their own (a worker or view server given --redis logs to <run dir>/logs) never write to the
    developer's; tests that need their own still take `run_dir`."""
    import os
    import shutil

    from bliss_lite.data.redis_server import stop_server

    root = Path(tempfile.mkdtemp(prefix="bl_run_", dir="/tmp"))  # short: a unix socket may live there
    saved = os.environ.get("BLISS_LITE_RUN_DIR")
    os.environ["BLISS_LITE_RUN_DIR"] = str(root)
    yield root
    if saved is None:
        os.environ.pop("BLISS_LITE_RUN_DIR", None)
    else:
        os.environ["BLISS_LITE_RUN_DIR"] = saved
    stop_server(root)  # one a test may have started there
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    path = tmp_path / "run"
    monkeypatch.setenv("BLISS_LITE_RUN_DIR", str(path))
    return path


@pytest.fixture
def server_dir(run_dir, monkeypatch):
    """A run directory whose server is stopped at the end of the test, whatever happened."""
    monkeypatch.delenv("BLISS_LITE_REDIS_URL", raising=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    yield run_dir
    from bliss_lite.data.redis_server import stop_server

    stop_server(run_dir)


@pytest.fixture
def config(run_dir):
    return Config(CONFIG_DIR, SettingsStore(run_dir))


@pytest.fixture
def test_session(config):
    """The `test` session set up, as the shell would: returns its namespace."""
    from bliss_lite.shell.runner import open_session

    session, namespace = open_session("test", CONFIG_DIR)
    return namespace


@contextmanager
def session_of_its_own(folder, redis_url, name="test"):
    """A session for a module-scoped fixture (the function-scoped ones cannot serve it): its data
    and run folders under `folder`, its scans published to `redis_url`; closed, and the
    environment given back, at the end. Yields its namespace."""
    from bliss_lite.shell.runner import open_session

    settings = pytest.MonkeyPatch()
    try:
        settings.setenv("BLISS_LITE_DATA_ROOT", str(Path(folder) / "data"))
        settings.setenv("BLISS_LITE_RUN_DIR", str(Path(folder) / "run"))
        settings.setenv("BLISS_LITE_REDIS_URL", redis_url)
        session, namespace = open_session(name, CONFIG_DIR)
        try:
            yield namespace
        finally:
            session.close()
    finally:
        settings.undo()


def write_config(root, files):
    """Write {relative path: YAML text} under root; returns root."""
    for name, text in files.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Path(root)


@pytest.fixture(scope="session")
def shared_redis():
    """One private redis-server for the scan tests, started as a session starts its own."""
    import os
    import shutil

    from bliss_lite.data.redis_server import ensure_server, stop_server

    root = Path(tempfile.mkdtemp(prefix="bl_redis_", dir="/tmp"))  # short: a unix socket lives there
    saved = os.environ.pop("BLISS_LITE_REDIS_URL", None)
    try:
        url = ensure_server(root)
    finally:
        if saved is not None:
            os.environ["BLISS_LITE_REDIS_URL"] = saved
    yield url
    stop_server(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    path = tmp_path / "data"
    monkeypatch.setenv("BLISS_LITE_DATA_ROOT", str(path))
    return path


@pytest.fixture
def scan_session(shared_redis, data_root, monkeypatch, test_session):
    """The `test` session namespace, its scans saved under data_root and published to Redis."""
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    return test_session

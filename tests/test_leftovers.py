"""The end-of-session check of tests/conftest.py: which processes it names and kills as left
running by the tests, and which it leaves alone (issue 20, item 7)."""
import os
import subprocess
import sys
import uuid

import psutil
from leftovers import TOKEN_ENV, SessionProcesses

from bliss_lite.data.redis_server import connect, ensure_server, stop_server

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid):
    try:
        psutil.wait_procs([psutil.Process(pid)], timeout=10)
    except psutil.NoSuchProcess:
        pass
    return _gone(pid)


def _orphan(env, *args):
    """A sleeper (args: more words on its command line) whose parent has exited, in a session of its own (as a worker pool starts them): its pid."""
    spawn = ("import subprocess, sys; p = subprocess.Popen(sys.argv[1:], start_new_session=True, "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    out = subprocess.run([sys.executable, "-c", spawn, *SLEEPER, *args], env=env, capture_output=True, text=True,
                         check=True).stdout
    return int(out)


def test_a_daemonized_redis_server_in_a_session_directory_is_named_and_killed(tmp_path, monkeypatch):
    monkeypatch.delenv("BLISS_LITE_REDIS_URL", raising=False)
    watch = SessionProcesses(token=uuid.uuid4().hex, dirs=[tmp_path])
    url = ensure_server(tmp_path / "run")
    try:
        pid = connect(url).info()["process_id"]
        assert psutil.Process(pid).ppid() != os.getpid()  # daemonized: not a descendant
        left = watch.finish(grace_s=0.2)
        assert len(left) == 1 and left[0].startswith(f"{pid} ") and "redis-server" in left[0], left
        assert _wait_gone(pid)
        assert watch.leftovers() == []
    finally:
        stop_server(tmp_path / "run")


def test_an_orphaned_worker_is_found_by_the_session_token_and_a_child_by_descent():
    token = uuid.uuid4().hex
    watch = SessionProcesses(token=token)
    orphan = _orphan({**os.environ, TOKEN_ENV: token})
    child = subprocess.Popen(SLEEPER, env={"PATH": os.environ.get("PATH", "")})  # no token, a descendant
    try:
        assert psutil.Process(orphan).ppid() != os.getpid()
        found = {proc.pid for proc in watch.leftovers()}
        assert found == {orphan, child.pid}
        left = watch.finish(grace_s=0.2)
        assert sorted(int(line.split()[0]) for line in left) == sorted([orphan, child.pid])
        assert _wait_gone(child.pid)  # killed, and reaped by the check
        assert _wait_gone(orphan)
    finally:
        child.kill()
        if not _gone(orphan):
            psutil.Process(orphan).kill()


def test_processes_running_before_the_session_or_of_another_session_are_left_alone(tmp_path):
    token = uuid.uuid4().hex
    before = _orphan({**os.environ, TOKEN_ENV: token})  # ours in every way, but running already
    watch = SessionProcesses(token=token, dirs=[tmp_path])
    other = _orphan({**os.environ, TOKEN_ENV: "another-session"})  # started since, not ours
    sibling = tmp_path.parent / (tmp_path.name + "0")  # a directory whose name only starts like ours
    sibling.mkdir()
    named = _orphan({**os.environ, TOKEN_ENV: "another-session"}, str(sibling))
    try:
        assert watch.leftovers() == []
        assert watch.finish(grace_s=0.2) == []
        assert not _gone(before) and not _gone(other) and not _gone(named)
    finally:
        for pid in (before, other, named):
            if not _gone(pid):
                psutil.Process(pid).kill()

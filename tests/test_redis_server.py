"""The private Redis server of a run directory: one per directory, found by every process."""
import os
import signal
import stat
import subprocess
import sys
import threading

import pytest
import redis

from bliss_lite.data.redis_server import (
    REDIS_URL_ENV,
    RedisUnavailable,
    ServerPaths,
    connect,
    ensure_server,
    server_status,
    stop_server,
)


def in_subprocess(code, run_dir, **env):
    full_env = dict(os.environ, BLISS_LITE_RUN_DIR=str(run_dir))
    full_env.pop(REDIS_URL_ENV, None)
    full_env.update(env)
    result = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


ENSURE = ("from bliss_lite.data.redis_server import ensure_server, connect; import os;"
          "url = ensure_server(os.environ['BLISS_LITE_RUN_DIR']); r = connect(url);")


def test_first_process_starts_it_and_others_find_it(server_dir):
    url = ensure_server(server_dir)
    assert url == f"unix://{server_dir}/redis/redis.sock"
    client = connect(url)
    client.set("greeting", "from the first process")
    pid = client.info()["process_id"]
    out = in_subprocess(ENSURE + "print(url, r.info()['process_id'], r.get('greeting').decode())", server_dir)
    assert out == f"{url} {pid} from the first process"
    assert ensure_server(server_dir) == url and connect(url).info()["process_id"] == pid


def test_concurrent_first_starts_make_one_server(server_dir):
    code = ENSURE + "print(r.info()['process_id'])"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, BLISS_LITE_RUN_DIR=str(server_dir))) for _ in range(3)]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(pids) == 1 and all(p.returncode == 0 for p in procs)


def test_private_server_listens_on_a_unix_socket_only(server_dir):
    client = connect(ensure_server(server_dir))
    assert client.config_get("port")["port"] == "0"
    assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
    mode = stat.S_IMODE(os.stat(ServerPaths.of(server_dir).socket).st_mode)
    assert mode & 0o077 == 0  # no access for group or others


def test_url_variable_points_at_an_existing_server(server_dir, tmp_path, monkeypatch):
    url = ensure_server(server_dir)
    other = tmp_path / "other"
    monkeypatch.setenv(REDIS_URL_ENV, url)
    assert ensure_server(other) == url
    assert not ServerPaths.of(other).socket.exists()  # nothing was started for `other`
    out = in_subprocess(ENSURE + "print(url)", other, **{REDIS_URL_ENV: url})
    assert out == url


def test_server_killed_hard_is_restarted(server_dir):
    url = ensure_server(server_dir)
    pid = connect(url).info()["process_id"]
    os.kill(pid, signal.SIGKILL)  # leaves a stale socket file behind
    assert ServerPaths.of(server_dir).socket.exists()
    assert ensure_server(server_dir) == url
    assert connect(url).info()["process_id"] != pid


def test_dead_server_is_reported_not_waited_for(server_dir):
    url = ensure_server(server_dir)
    client = connect(url)
    assert client.ping()
    stop_server(server_dir)
    outcome = {}

    def ping():
        try:
            client.ping()
            outcome["result"] = "answered"
        except redis.ConnectionError as exc:
            outcome["result"] = exc

    worker = threading.Thread(target=ping, daemon=True)
    worker.start()
    worker.join(10)  # generous bound for a loaded machine: the point is that it returns
    assert not worker.is_alive(), "ping to a dead server hangs"
    assert isinstance(outcome["result"], redis.ConnectionError)


def test_run_dir_too_deep_for_a_socket(tmp_path, monkeypatch):
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    deep = tmp_path / ("d" * 120)
    with pytest.raises(RedisUnavailable, match="run directory too deep for a unix socket"):
        ensure_server(deep)


def test_server_command_status_start_stop(server_dir):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "bliss_lite", "server", *args], capture_output=True, text=True,
                              env=dict(os.environ, BLISS_LITE_RUN_DIR=str(server_dir)), timeout=60)

    status = cli("status")
    assert status.returncode == 1 and status.stdout.startswith("not running")
    start = cli("start")
    assert start.returncode == 0 and start.stdout.strip() == f"unix://{server_dir}/redis/redis.sock"
    status = cli("status")
    pid = server_status(server_dir)["pid"]
    assert status.returncode == 0 and status.stdout.startswith(f"running: pid {pid}, redis ")
    assert cli("stop").stdout.strip() == "stopped"
    assert server_status(server_dir)["running"] is False
    assert cli("stop").stdout.startswith("not running")

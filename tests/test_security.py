"""Security: the private Redis listens on a unix socket only; a TCP Redis may ask for a password
and an ACL user, which scans, workers and followers use; no message prints the password; and
nothing is unpickled from the wire."""
import ast
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from bliss_lite.data.client import RedisLost, ScanClient, ScanReader
from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.redis_server import connect, ensure_server, redis_server_binary
from bliss_lite.data.redis_url import mask_url
from bliss_lite.data.writer import read_entry

PACKAGE = Path(__file__).resolve().parents[1] / "bliss_lite"
ADMIN = "admin-pw-not-for-scans"
SECRET = "s3cret-Pw_never-printed"
WRONG = "wr0ng-Pw_never-printed"


def test_private_server_listens_on_no_tcp_port(server_dir):
    client = connect(ensure_server(server_dir))
    assert client.config_get("port")["port"] == "0" and client.info("server")["tcp_port"] == 0
    pid = client.info("server")["process_id"]
    if not Path(f"/proc/{pid}/fd").is_dir():
        pytest.skip("no /proc to look at the server's sockets")
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:["):-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(fields[9])
    assert inodes and not inodes & listening  # it has sockets, and none is a TCP listener


def test_passwords_are_masked_in_urls():
    assert mask_url(f"redis://scanner:{SECRET}@127.0.0.1:6390/0") == "redis://scanner:***@127.0.0.1:6390/0"
    assert mask_url(f"redis://:{SECRET}@host:6379") == "redis://:***@host:6379"
    assert mask_url(f"unix:///tmp/r.sock?db=0&password={SECRET}") == "unix:///tmp/r.sock?db=0&password=***"
    assert mask_url("redis://scanner@host:6379/1") == "redis://scanner@host:6379/1"
    assert mask_url("unix:///tmp/run/redis/redis.sock") == "unix:///tmp/run/redis/redis.sock"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tcp_redis(tmp_path_factory):
    """A redis-server on a free TCP port that wants a password, with an ACL user `scanner`
    allowed the bliss_lite keys only. Yields (url for scanner, url with a wrong password)."""
    port = free_port()
    server = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                               "--requirepass", ADMIN, "--save", "", "--appendonly", "no",
                               "--dir", str(tmp_path_factory.mktemp("tcp_redis"))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = redis.Redis(host="127.0.0.1", port=port, password=ADMIN)
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.02)
    admin.execute_command("ACL", "SETUSER", "scanner", "on", f">{SECRET}", "~bliss_lite:*", "&*", "+@all")
    yield (f"redis://scanner:{SECRET}@127.0.0.1:{port}/0", f"redis://scanner:{WRONG}@127.0.0.1:{port}/0")
    server.terminate()
    server.wait(10)


def cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "bliss_lite", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_a_scan_publishes_through_a_password_and_an_acl_user(scan_session, tcp_redis, monkeypatch):
    url, _ = tcp_redis
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", url)
    scan_session["SESSION"].scan_context.redis.forget()
    try:
        ns = scan_session
        scan = ns["ascan"](ns["m0"], 0, 1, 5, 0.001, ns["diode1"])
    finally:
        scan_session["SESSION"].scan_context.redis.forget()
    in_redis = ScanReader(connect(url), scan.key).get_data()
    in_file = read_entry(scan.filename, scan.number)
    for name in ("m0", "diode1"):
        np.testing.assert_array_equal(in_redis[name], in_file[name])
    anonymous = connect(url.replace(f"scanner:{SECRET}@", ""))
    with pytest.raises(redis.AuthenticationError):
        anonymous.get(scan.key)  # nobody reads it without the password


def test_workers_and_followers_use_the_acl_user(tcp_redis, tmp_path):
    url, _ = tcp_redis
    worker = cli("worker", "--redis", url, "--max-idle", "0.2", BLISS_LITE_RUN_DIR=str(tmp_path))
    assert worker.returncode == 0 and "ready" in worker.stdout, worker.stderr
    assert SECRET not in worker.stdout + worker.stderr
    env = {**os.environ, "BLISS_LITE_REDIS_URL": url, "BLISS_LITE_RUN_DIR": str(tmp_path)}
    follower = subprocess.Popen([sys.executable, "-m", "bliss_lite", "follow", "--count", "1", "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = follower.stdout.readline()
        assert first.startswith("Following scans on redis://scanner:***@") and SECRET not in first
        watcher, deadline = connect(url), time.monotonic() + 30
        while not any(c["cmd"] == "xread" for c in watcher.client_list()) and time.monotonic() < deadline:
            time.sleep(0.02)  # until the follower waits for the next scan
        publisher = ScanPublisher(connect(url), session="test", number=1, name="loopscan",
                                  channels=[ChannelSpec("diode1")])
        publisher.create(then=("STARTED",))
        publisher.publish({"diode1": [1.5, 2.5, 3.5]})
        publisher.seal()
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert "End of scan 1: SUCCESS, 3 points" in out and SECRET not in out + err


def test_a_wrong_password_is_named_without_printing_it(tcp_redis, scan_session, monkeypatch, caplog, tmp_path):
    _, bad = tcp_redis
    masked = mask_url(bad)
    assert masked.endswith("scanner:***@127.0.0.1:" + bad.rsplit(":", 1)[1])
    with pytest.raises(redis.AuthenticationError) as error:
        connect(bad).ping()
    assert masked in str(error.value) and WRONG not in str(error.value)
    with pytest.raises(RedisLost) as error:
        ScanClient(connect(bad)).wait_next_scan(timeout_ms=0)
    assert masked in str(error.value) and WRONG not in str(error.value)

    monkeypatch.setenv("BLISS_LITE_REDIS_URL", bad)
    scan_session["SESSION"].scan_context.redis.forget()
    try:
        scan = scan_session["ascan"](scan_session["m0"], 0, 1, 3, 0)
    finally:
        scan_session["SESSION"].scan_context.redis.forget()
    err = caplog.text  # the scan's warning (plain on stderr in the shell)
    assert scan.end_reason == "SUCCESS" and len(read_entry(scan.filename, scan.number)["m0"]) == 4
    assert f"WARNING: no Redis for live data (Redis at {masked}" in err and WRONG not in err

    worker = cli("worker", "--redis", bad, BLISS_LITE_RUN_DIR=str(tmp_path))
    follow = cli("follow", "--count", "1", BLISS_LITE_REDIS_URL=bad, BLISS_LITE_RUN_DIR=str(tmp_path))
    for process in (worker, follow):
        assert process.returncode == 1 and masked in process.stderr
        assert WRONG not in process.stdout + process.stderr


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
EXEC_ALLOWED = {"config/session.py", "shell/runner.py",  # the session's setup script, the user's own code
                "shell/queue_commands.py"}  # a queue item's script: a file of the server's own folder, by name


def test_nothing_is_unpickled_from_the_wire():
    """A static check of the package: no pickle-like module imported, no eval, no pickled numpy
    loads, and exec only where the user's own local files run."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where}: from {node.module} import")
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name == "eval" or (name == "exec" and where not in EXEC_ALLOWED):
                    found.append(f"{where}:{node.lineno}: {name}()")
                if any(k.arg == "allow_pickle" for k in node.keywords):
                    found.append(f"{where}:{node.lineno}: allow_pickle")
    assert found == []

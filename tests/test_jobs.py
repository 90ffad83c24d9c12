"""The job runner (dahu-like): registry, Job JSON, concurrency, Redis submission and serving,
`bliss-lite reprocess`, and the frame sources for reprocessing (CBF folders, HDF5 entries)."""
import json
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from bliss_lite.config.file_checks import FileCheckError
from bliss_lite.processing import job_server
from bliss_lite.processing.frame_sources import cbf_files, cbf_frames, hdf5_frames, hdf5_scan
from bliss_lite.processing.jobs import (
    PLUGINS,
    Job,
    JobError,
    JobRunner,
    Plugin,
    UnknownPluginError,
    call_plugin,
    register,
    run_job,
)
from bliss_lite.processing.reprocess import main as reprocess

HANG = 30  # seconds: hang guards only, nothing is timed


@pytest.fixture
def plugins():
    """Register test plugins; the registry is restored afterwards."""
    saved = dict(PLUGINS)
    yield register
    PLUGINS.clear()
    PLUGINS.update(saved)


@pytest.fixture
def runner():
    with JobRunner(max_workers=4) as runner:
        yield runner


# --- registry ---------------------------------------------------------------------------------

def test_function_and_class_plugins(plugins):
    @plugins()
    def add(input):
        return {"sum": input["a"] + input["b"]}

    steps = []

    @plugins("scale")
    class Scale(Plugin):
        def setup(self, input):
            super().setup(input)
            steps.append("setup")

        def process(self):
            steps.append("process")
            if self.input["factor"] == 0:
                raise ValueError("factor 0")
            self.output["values"] = [v * self.input["factor"] for v in self.input["values"]]

        def teardown(self):
            steps.append("teardown")

    assert call_plugin("add", {"a": 1, "b": 2}) == {"sum": 3}
    assert call_plugin("scale", {"factor": 2, "values": [1, 2]}) == {"values": [2, 4]}
    assert steps == ["setup", "process", "teardown"]
    job = run_job(Job("scale", {"factor": 0, "values": []}))
    assert job.status == "failure" and job.error == "ValueError: factor 0"
    assert steps[-1] == "teardown"  # also after an error
    assert {"dummy", "sleep", "add", "scale"} <= set(PLUGINS)
    assert call_plugin("dummy", {"x": [1]}) == {"x": [1]}


def test_registration_mistakes(plugins):
    @plugins("taken")
    def first(input):
        return {}

    with pytest.raises(ValueError, match="'taken' is already registered by .*first"):
        @plugins("taken")
        def second(input):
            return {}

    with pytest.raises(TypeError, match="lacks process"):
        @plugins("nothing")
        class Nothing:
            def setup(self, input): ...
            def teardown(self): ...

    @plugins("wrong_type")
    def wrong_type(input):
        return [1]

    job = run_job(Job("wrong_type", {}))
    assert job.status == "failure" and "returned list, not a dict" in job.error


def test_unknown_plugin_refused_with_the_registered_names(runner):
    with pytest.raises(UnknownPluginError) as info:
        runner.submit("integrat_scan", {})
    assert "unknown plugin 'integrat_scan'" in str(info.value)
    assert "registered plugins: " in str(info.value) and "dummy" in str(info.value) and "sleep" in str(info.value)
    job = run_job(Job("nope", {}))
    assert job.status == "failure" and "unknown plugin 'nope'" in job.error


def test_input_naming_code_never_imports_it(tmp_path, monkeypatch, runner, shared_redis):
    marker = tmp_path / "imported"
    (tmp_path / "evil_plugin.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\ndef run(input):\n    return {{}}\nclass Plugin: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["evil_plugin", "evil_plugin.run", "evil_plugin:run", "evil_plugin.Plugin"]
    payload = {"module": "evil_plugin", "class": "evil_plugin.Plugin", "plugin": "evil_plugin.run"}
    for name in names:
        with pytest.raises(UnknownPluginError):
            runner.submit(name, payload)
        assert run_job(Job(name, payload)).status == "failure"
        path = tmp_path / f"{name.replace(':', '_')}.json"
        path.write_text(json.dumps({"plugin": name, "input": payload}))
        assert reprocess([str(path)]) == 2
    client = _client(shared_redis)
    job_id = job_server.submit_remote(client, "evil_plugin.run", payload)
    _serve_until(client, 1)
    result = job_server.wait_remote(client, job_id, timeout=HANG)
    assert result.status == "failure" and "unknown plugin 'evil_plugin.run'" in result.error
    assert "evil_plugin" not in sys.modules and not marker.exists()


# --- the job record ---------------------------------------------------------------------------

def test_job_json_round_trip(tmp_path, runner):
    job = runner.wait(runner.submit("dummy", {"npt": 500, "name": "a", "nested": {"q": [1.5, 2]}}), HANG)
    assert job.status == "success" and job.output == job.input and job.error is None
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert job.created <= job.started <= job.finished and isinstance(job.seconds, float)  # recorded, not judged
    path = job.save(tmp_path / "job.json")
    data = json.loads(path.read_text())
    assert set(data) >= {"id", "plugin", "status", "input", "output", "error", "traceback", "timings"}
    assert set(data["timings"]) == {"created", "started", "finished", "seconds"}
    again = Job.load(path)
    assert again.to_dict() == job.to_dict()
    created = Job.from_json('{"plugin": "dummy", "input": {}}')  # a hand-written job file
    assert created.status == "created" and created.started is None and len(created.id) == 32


def test_numpy_output_saved_as_json(plugins, tmp_path):
    @plugins("array")
    def array(input):
        return {"q": np.linspace(0, 1, 3), "n": np.int64(3)}

    job = run_job(Job("array", {}))
    assert Job.load(job.save(tmp_path / "a.json")).output == {"q": [0.0, 0.5, 1.0], "n": 3}


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not JSON"),
    ("[1, 2]", "a job is a JSON object"),
    ('{"input": {}}', "missing field 'plugin'"),
    ('{"plugin": "dummy"}', "missing field 'input'"),
    ('{"plugin": "dummy", "input": [1]}', "field 'input' must be a JSON object"),
    ('{"plugin": 3, "input": {}}', "field 'plugin' must be a string"),
    ('{"plugin": "dummy", "input": {}, "status": "done"}', "status 'done' is not one of"),
    ('{"plugin": "dummy", "input": {}, "timings": {"started": "noon"}}', "timings.started must be a number"),
])
def test_bad_job_records(text, problem):
    with pytest.raises(JobError, match=f"^here: {problem}"):
        Job.from_json(text, source="here")


def test_failing_plugin_gives_failure_with_the_error(plugins, runner):
    @plugins("broken")
    def broken(input):
        raise RuntimeError(f"detector {input['name']} unplugged")

    job = runner.wait(runner.submit("broken", {"name": "pilatus"}), HANG)
    assert job.status == "failure" and job.output is None
    assert job.error == "RuntimeError: detector pilatus unplugged"
    assert "raise RuntimeError" in job.traceback and job.finished >= job.started
    assert Job.from_json(job.to_json()).error == job.error


# --- concurrency ------------------------------------------------------------------------------

def test_jobs_run_concurrently(plugins, runner):
    """Each job waits for the other to have started: they only finish if both run at once."""
    events = {"a": threading.Event(), "b": threading.Event()}

    @plugins("meet")
    def meet(input):
        events[input["me"]].set()
        if not events[input["other"]].wait(HANG):
            raise TimeoutError("the other job never ran alongside")
        return {"met": input["other"]}

    first = runner.submit("meet", {"me": "a", "other": "b"})
    second = runner.submit("meet", {"me": "b", "other": "a"})
    assert runner.wait(first, HANG).output == {"met": "b"}
    assert runner.wait(second, HANG).output == {"met": "a"}


def test_queued_job_can_be_aborted(plugins):
    release, started = threading.Event(), threading.Event()

    @plugins("hold")
    def hold(input):
        started.set()
        release.wait(HANG)
        return {}

    with JobRunner(max_workers=1) as runner:
        busy = runner.submit("hold", {})
        assert started.wait(HANG)
        queued = runner.submit("dummy", {})
        assert runner.abort(queued) is True and queued.status == "aborted"
        assert runner.abort(busy) is False  # running: cannot be stopped
        with pytest.raises(TimeoutError):
            runner.wait(busy, timeout=0.01)
        release.set()
        assert runner.wait(busy, HANG).status == "success"
        assert runner.wait(queued, HANG).status == "aborted"


def test_jobs_run_concurrently_under_gevent(tmp_path):
    """In a monkey-patched process (the shell) each job is a greenlet, its plugin in the hub's
    threadpool: two jobs meet, and the hub keeps running greenlets while they run."""
    script = tmp_path / "gevent_jobs.py"
    script.write_text(textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import gevent, time
        from bliss_lite.processing.jobs import JobRunner, register
        lock = monkey.get_original("_thread", "allocate_lock")
        locks = {"a": lock(), "b": lock()}
        for held in locks.values(): held.acquire()
        @register("meet")
        def meet(input):
            locks[input["me"]].release()
            if not locks[input["other"]].acquire(timeout=30):
                raise TimeoutError("never met")
            time.sleep(0.05)
            return {"met": input["other"]}
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.001)) for _ in range(10)])
        runner = JobRunner()
        assert runner.gevent
        jobs = [runner.submit("meet", {"me": "a", "other": "b"}), runner.submit("meet", {"me": "b", "other": "a"})]
        print([runner.wait(job, 30).status for job in jobs], ticker.join(30) or len(ticks))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=HANG * 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['success',", "'success']", "10"]


# --- through Redis ----------------------------------------------------------------------------

def _client(url):
    """A private database of the shared test server, emptied: each test has its own queue."""
    from bliss_lite.data.redis_server import connect

    client = connect(f"{url}?db=7")
    client.flushdb()
    return client


@pytest.fixture
def jobs_redis(shared_redis):
    client = _client(shared_redis)
    yield client
    client.flushdb()


def _serve_until(client, max_jobs, **options):
    options.setdefault("block_ms", 20)
    result = {}

    def target():
        result["served"] = job_server.serve(client, max_jobs=max_jobs, log=lambda m: None, **options)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), "server did not finish its jobs"
    return result["served"]


@pytest.fixture
def server_thread(jobs_redis):
    stop, messages = threading.Event(), []
    thread = threading.Thread(target=job_server.serve, args=(jobs_redis, stop),
                              kwargs=dict(block_ms=20, consumer="test-server", log=messages.append), daemon=True)
    thread.start()
    yield messages
    stop.set()
    thread.join(HANG)
    assert not thread.is_alive()


def test_remote_job_result_comes_back(plugins, jobs_redis, server_thread):
    @plugins("broken_remote")
    def broken_remote(input):
        raise ValueError("bad npt")

    job_id = job_server.submit_remote(jobs_redis, "dummy", {"npt": 500})
    job = job_server.wait_remote(jobs_redis, job_id, timeout=HANG)
    assert (job.id, job.status, job.output) == (job_id, "success", {"npt": 500})
    assert job.created <= job.started <= job.finished
    failed = job_server.wait_remote(jobs_redis, job_server.submit_remote(jobs_redis, "broken_remote", {}), HANG)
    assert failed.status == "failure" and failed.error == "ValueError: bad npt"
    jobs_redis.xadd(job_server.QUEUE_KEY, {"job": "{not json"})  # dropped, the server goes on
    many = [job_server.submit_remote(jobs_redis, "dummy", {"i": i}) for i in range(50)]
    assert [job_server.wait_remote(jobs_redis, i, HANG).output["i"] for i in many] == list(range(50))
    assert any("not JSON" in m for m in server_thread)
    assert 0 < jobs_redis.ttl(job_server.result_key(job_id)) <= job_server.RESULT_TTL
    notices = jobs_redis.xrange(job_server.DONE_KEY)
    assert {f[b"id"].decode() for _, f in notices} >= {job_id, *many}
    assert jobs_redis.xlen(job_server.QUEUE_KEY) == 0  # served entries are acknowledged and deleted
    with pytest.raises(KeyError, match="no job 0123"):
        job_server.wait_remote(jobs_redis, "0123", timeout=1)


def test_remote_wait_times_out(plugins, jobs_redis):
    job_id = job_server.submit_remote(jobs_redis, "dummy", {})  # no server running
    assert job_server.get_remote(jobs_redis, job_id).status == "created"
    with pytest.raises(TimeoutError, match="status created"):
        job_server.wait_remote(jobs_redis, job_id, timeout=0.05)


def test_dead_servers_job_is_claimed(jobs_redis):
    job_id = job_server.submit_remote(jobs_redis, "dummy", {"frame": 7})
    job_server._ensure_group(jobs_redis)
    taken = jobs_redis.xreadgroup(job_server.GROUP, "dead-server", {job_server.QUEUE_KEY: ">"}, count=1)
    assert len(taken[0][1]) == 1  # delivered to a server that then died without acknowledging
    assert _serve_until(jobs_redis, 1, claim_idle_ms=10, consumer="alive") == 1
    job = job_server.wait_remote(jobs_redis, job_id, timeout=HANG)
    assert job.status == "success" and job.output == {"frame": 7}
    assert jobs_redis.xpending(job_server.QUEUE_KEY, job_server.GROUP)["pending"] == 0


def test_live_servers_running_job_is_not_claimed(plugins, jobs_redis, shared_redis):
    """Server A runs a long job and keeps it fresh; server B, claiming idle entries all the
    while, never takes it (B's claim cycles are counted, not timed)."""
    release, started = threading.Event(), threading.Event()
    runs = []

    @plugins("long")
    def long(input):
        runs.append(1)
        started.set()
        release.wait(HANG)
        return {"done": True}

    job_id = job_server.submit_remote(jobs_redis, "long", {})
    stop = threading.Event()
    a = threading.Thread(target=job_server.serve, args=(jobs_redis, stop), daemon=True,
                         kwargs=dict(consumer="a", block_ms=50, claim_idle_ms=600, log=lambda m: None))
    a.start()
    assert started.wait(HANG)
    _wait_for(lambda: job_server.get_remote(jobs_redis, job_id).status == "running")
    b_client = _client_no_flush(shared_redis)
    cycles = threading.Semaphore(0)
    original = b_client.xautoclaim

    def counting(*args, **kwargs):
        reply = original(*args, **kwargs)
        cycles.release()
        return reply

    b_client.xautoclaim = counting
    b = threading.Thread(target=job_server.serve, args=(b_client, stop), daemon=True,
                         kwargs=dict(consumer="b", block_ms=150, claim_idle_ms=600, log=lambda m: None))
    b.start()
    for _ in range(10):  # 10 cycles of B, 150 ms apart at least: over twice the idle time
        assert cycles.acquire(timeout=HANG)
    release.set()
    assert job_server.wait_remote(jobs_redis, job_id, timeout=HANG).output == {"done": True}
    stop.set()
    a.join(HANG)
    b.join(HANG)
    assert runs == [1]


def _wait_for(condition):
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.01)


def _client_no_flush(url):
    from bliss_lite.data.redis_server import connect

    return connect(f"{url}?db=7")


# --- bliss-lite reprocess ---------------------------------------------------------------------

def test_reprocess_reruns_a_job_with_overrides(tmp_path, capsys):
    saved = run_job(Job("dummy", {"npt": 1000, "unit": "q_nm^-1", "azimuthal": {"npt": 1}}))
    path = saved.save(tmp_path / "integrate.json")
    assert reprocess([str(path), "--set", "npt=500", "--set", "unit=2th_deg", "--set", "azimuthal.npt=[1, 2]",
                      "--set", "mask=null"]) == 0
    out = capsys.readouterr().out
    result_path = tmp_path / "integrate.reprocessed.json"
    assert f"{path} -> {result_path}: dummy success" in out and len(out.strip().splitlines()) == 1
    rerun = Job.load(result_path)
    assert rerun.status == "success" and rerun.reprocessed_from == saved.id and rerun.id != saved.id
    assert rerun.output == {"npt": 500, "unit": "2th_deg", "azimuthal": {"npt": [1, 2]}, "mask": None}
    assert Job.load(path).input["npt"] == 1000  # the original is left as it was
    out_dir = tmp_path / "out"
    assert reprocess([str(result_path), "--output", str(out_dir)]) == 0
    assert (out_dir / "integrate.reprocessed.json").is_file()


def test_reprocess_exit_codes(plugins, tmp_path, capsys):
    @plugins("fails")
    def fails(input):
        raise ValueError("no such entry 9.1")

    good = Job("dummy", {}).save(tmp_path / "good.json")
    failing = Job("fails", {}).save(tmp_path / "failing.json")
    assert reprocess([str(good), str(failing)]) == 1
    captured = capsys.readouterr()
    assert "fails failure" in captured.out and "ValueError: no such entry 9.1" in captured.out
    assert Job.load(tmp_path / "failing.reprocessed.json").status == "failure"

    (tmp_path / "garbage.json").write_text("{oops")
    (tmp_path / "noplugin.json").write_text('{"input": {}}')
    (tmp_path / "unknown.json").write_text('{"plugin": "integrat_scan", "input": {}}')
    (tmp_path / "good.reprocessed.json").unlink()
    for name, problem in (("garbage.json", "not JSON"), ("noplugin.json", "missing field 'plugin'"),
                          ("unknown.json", "unknown plugin 'integrat_scan'; registered plugins: "),
                          ("missing.json", "cannot read")):
        assert reprocess([str(good), str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / name}: {problem}" in err, err
    assert not (tmp_path / "good.reprocessed.json").exists()  # nothing ran
    assert reprocess([str(good), "--set", "novalue"]) == 2
    assert "expected key=value" in capsys.readouterr().err


# --- frame sources ----------------------------------------------------------------------------

def test_cbf_frames_in_file_name_order(tmp_path):
    import fabio.cbfimage

    rng = np.random.default_rng(5)
    frames = [rng.poisson(20, (40, 33)).astype(np.int32) for _ in range(12)]
    frames[3][5, 7] = 1_000_000  # beyond the byte-offset's one-byte steps
    for i, frame in enumerate(frames):  # img_1 ... img_12: natural order, not 1, 10, 11, 12, 2
        fabio.cbfimage.CbfImage(data=frame).write(str(tmp_path / f"img_{i + 1}.cbf"))
    (tmp_path / "notes.txt").write_text("not a frame")
    assert [p.name for p in cbf_files(tmp_path)][:3] == ["img_1.cbf", "img_2.cbf", "img_3.cbf"]
    for readers in (1, 3, 6):
        got = list(cbf_frames(tmp_path, readers=readers))
        assert [i for i, _ in got] == list(range(12))
        for (_, frame), expected in zip(got, frames):
            np.testing.assert_array_equal(frame, expected)
    first = cbf_frames(tmp_path, readers=4)
    assert next(first)[0] == 0
    first.close()  # stopping early leaves no reader behind
    with pytest.raises(FileNotFoundError, match="no file matches"):
        next(cbf_frames(tmp_path, pattern="*.edf"))
    (tmp_path / "sub").mkdir()  # a pattern names files of the folder only: '../../*.cbf' once listed others
    (tmp_path / "outside.cbf").write_text("not of the folder")
    for pattern in ["../*.cbf", "../../*.cbf", "..", f"{tmp_path}/*.cbf", "*/*.cbf"]:
        with pytest.raises(FileCheckError, match="must be a file-name pattern within the folder") as error:
            cbf_files(tmp_path / "sub", pattern)
        assert str(error.value).startswith(f"{tmp_path / 'sub'}: pattern ") and repr(pattern) in str(error.value)


def test_cbf_frames_from_the_pilatus_simulator(tmp_path):
    from bliss_lite.controllers.detectors.pilatus import Pilatus2M

    pilatus = Pilatus2M("pilatus", roi=(0, 0, 64, 48), cbf_directory=tmp_path)
    written = []
    for index in range(3):
        frame = np.full((48, 64), index + 1, dtype=np.int32)
        pilatus._write_cbf(index, frame, 0.01)
        written.append(frame)
    got = [frame for _, frame in cbf_frames(tmp_path)]
    assert len(got) == 3
    for frame, expected in zip(got, written):
        np.testing.assert_array_equal(frame, expected)


def test_hdf5_frames_and_positions(tmp_path):
    from bliss_lite.data import bslz4
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.writer import EntryWriter

    rng = np.random.default_rng(1)
    frames = rng.poisson(3, (7, 24, 20)).astype(np.int32)
    omega = np.linspace(0, 180, 7)
    path = tmp_path / "sample.h5"
    writer = EntryWriter(path, 2, title="xrdct omega x z", axes=[ChannelSpec("omega", unit="deg")],
                         counters=[ChannelSpec("i0"), ChannelSpec("pilatus", "int32", (24, 20), encoding="bslz4")])
    writer.append({"omega": omega, "i0": np.ones(7), "pilatus": [bslz4.compress(f) for f in frames]})
    writer.close()
    for readers in (1, 3):
        got = list(hdf5_frames(path, "2.1", readers=readers))
        assert [i for i, _ in got] == list(range(7))
        np.testing.assert_array_equal(np.stack([f for _, f in got]), frames)
    assert [i for i, _ in hdf5_frames(path, 2, start=2, stop=4)] == [2, 3]
    record = hdf5_scan(path, 2)
    assert (record.entry, record.title, record.nframes, record.frame_shape) == ("2.1", "xrdct omega x z", 7, (24, 20))
    np.testing.assert_array_equal(record.channels["omega"], omega)
    assert set(record.channels) == {"omega", "i0"} and record.scan_info is None
    with pytest.raises(KeyError, match="no entry 5.1"):
        next(hdf5_frames(path, 5))

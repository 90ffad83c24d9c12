"""`bliss-lite reprocess JOB.json [JOB2.json ...] [--set key=value ...] [--output DIR]`.

Reruns saved jobs offline with the registered plugins: a scan's reduction redone from its file
with other parameters, or from a folder of CBF frames. Every job file is checked before any job
runs (JSON, the fields `plugin` and `input`, a registered plugin); a bad one is named with its
problem and the exit code is 2. `--set key=value` overrides an input parameter in every job
(a dotted key reaches into nested objects: `--set azimuthal.npt=500`); the value is JSON when it
parses as JSON (500, 0.5, true, [1, 2], "text"), else the plain string. Each job runs as a new
job (new id, `reprocessed_from` the old one) in this process; one line per job says how it
ended, and the finished job (with its traceback, if it failed) is written next to its file as
`<name>.reprocessed.json` (or into --output DIR). Exit code 1 if any job failed.

`--dask [ADDRESS]` (or BLISS_LITE_DASK, or a top-level "dask" key in the job file: true or an
address) runs `integrate_scan` jobs of HDF5 scans (by frame ranges, dask_integrate.py) and
`reconstruct_scan` jobs (by heights, dask_reconstruct.py) on a dask.distributed cluster:
without an address a LocalCluster started here, else the scheduler at ADDRESS
(tcp://HOST:8786), which must answer within seconds (exit 2, nothing written, if not).
Other jobs run in this process as before.

A job run here or on a LocalCluster whose input asks for backend "gpu" ("backend" or
"reconstruction.backend") where CuPy or a GPU is missing is a bad job file: named with why,
exit 2, nothing run (`gpu_refusal`). `integrate_scan` with backend "gpu" integrates in this
process through the batched GPU pipeline the Dask tasks use (scan_plugins.py).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
from pathlib import Path

from bliss_lite.processing.dask_cluster import DaskUnavailable, cluster
from bliss_lite.processing.jobs import (
    MAX_DEPTH,
    Job,
    JobError,
    UnknownPluginError,
    get_plugin,
    load_plugins,
    run_job,
    too_deep,
)

SUFFIX = ".reprocessed"


class UsageError(ValueError):
    pass


def parse_setting(text):
    """"a.b=value" -> (["a", "b"], value parsed as JSON, else the string)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {text!r}: expected key=value")
    path = key.strip().split(".")
    if any(not part for part in path):
        raise UsageError(f"--set {text!r}: empty part in key {key!r}")
    deep = False
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    except RecursionError:  # the decoder's own limit (Python 3.11); 3.12's C decoder goes deeper
        deep = True
    if deep or too_deep(value, MAX_DEPTH - len(path)):  # checked here, not when the job is written
        raise UsageError(f"--set {key.strip()}: value nested too deeply (a job nests at most {MAX_DEPTH} deep)")
    return path, value


def apply_settings(input, settings):
    """A copy of `input` with each (path, value) set, nested objects created as needed."""
    result = copy.deepcopy(input)
    for path, value in settings:
        target = result
        for i, part in enumerate(path[:-1]):
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"--set {'.'.join(path)}: {'.'.join(path[:i + 1])} is not an object "
                                 f"({type(child).__name__})")
            target = child
        target[path[-1]] = value
    return result


def output_path(source, output_dir=None):
    source = Path(source)
    stem = source.stem if source.suffix == ".json" else source.name
    name = (stem if stem.endswith(SUFFIX) else stem + SUFFIX) + ".json"
    return (Path(output_dir) if output_dir else source.parent) / name


def _summary(job, source, target):
    seconds = f"{job.seconds:.3f} s" if job.seconds is not None else "-"
    if job.status == "success":
        keys = ", ".join(sorted(job.output)[:6]) + (", ..." if len(job.output) > 6 else "")
        detail = f"output: {keys or '(empty)'}"
    else:
        detail = job.error or ""
    return f"{source} -> {target}: {job.plugin} {job.status} in {seconds} (job {job.id[:8]}); {detail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bliss-lite reprocess",
                                     description="Rerun saved jobs offline with the registered plugins.")
    parser.add_argument("jobs", nargs="+", metavar="JOB.json")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override an input parameter (value parsed as JSON if it parses)")
    parser.add_argument("--output", metavar="DIR", help="write the finished jobs here (default: beside each file)")
    parser.add_argument("--dask", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on Dask: a LocalCluster here, or the scheduler at ADDRESS (tcp://HOST:8786)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        settings = [parse_setting(text) for text in args.settings]
    except UsageError as exc:
        print(f"bliss-lite reprocess: {exc}", file=sys.stderr)
        return 2
    load_plugins()
    if args.output:
        try:
            Path(args.output).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"bliss-lite reprocess: --output {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2

    prepared, bad = [], []
    for name in args.jobs:  # every file checked before anything runs
        try:
            saved = Job.load(name)
            try:
                get_plugin(saved.plugin)
            except UnknownPluginError as exc:
                raise JobError(f"{name}: {exc}") from None
            input = apply_settings(saved.input, settings)
            job, address = Job(saved.plugin, input, reprocessed_from=saved.id), dask_address(args.dask, name)
            refusal = gpu_refusal(job, address)
            if refusal:
                raise UsageError(refusal)
        except (JobError, UsageError) as exc:
            bad.append(str(exc) if str(exc).startswith(name) else f"{name}: {exc}")
            continue
        prepared.append((name, job, address))
    if bad:
        for message in bad:
            print(f"bliss-lite reprocess: {message}", file=sys.stderr)
        print(f"bliss-lite reprocess: {len(bad)} bad job file(s); nothing run", file=sys.stderr)
        return 2

    try:
        with dask_clients({address for _, _, address in prepared}, wants_gpu(prepared)) as clients:
            return _run_all(prepared, clients, args.output)
    except DaskUnavailable as exc:
        print(f"bliss-lite reprocess: {exc}; nothing run", file=sys.stderr)
        return 2


def dask_address(option, name):
    """None (run here), "" (a LocalCluster) or a scheduler address: --dask, else BLISS_LITE_DASK
    ("local" or an address), else the job file's top-level "dask" (true or an address)."""
    if option is not None:
        return option
    env = os.environ.get("BLISS_LITE_DASK")
    if env:
        return "" if env.strip().lower() in ("1", "local", "true", "yes") else env.strip()
    from bliss_lite.config.file_checks import FileCheckError, read_checked

    try:
        value = json.loads(read_checked(name, "job")).get("dask")
    except (FileCheckError, OSError, ValueError, AttributeError, RecursionError):
        return None
    if value is True:
        return ""
    return value if isinstance(value, str) and value else None


def wants_gpu(prepared):
    """True when a job for the LocalCluster asks for the GPU (input "backend", or
    reconstruction.backend): its workers are then one per GPU, not one per core."""
    return any(address == "" and "gpu" in dict(_backends(job.input)).values() for _, job, address in prepared)


def _backends(input):
    """(key, value) of the backends a job's input asks for: "backend", "reconstruction.backend"."""
    reconstruction = input.get("reconstruction")
    return (("backend", input.get("backend")),
            ("reconstruction.backend", reconstruction.get("backend") if isinstance(reconstruction, dict) else None))


def gpu_refusal(job, address):
    """Why a job run on this host (address None: here; "": a LocalCluster) cannot have the GPU
    its input asks for, naming the key; None when it can or asks for none. A cluster's
    workers have GPUs of their own: not checked here."""
    if address not in (None, ""):
        return None
    asked = [key for key, value in _backends(job.input) if value == "gpu"]
    if not asked:
        return None
    from bliss_lite.processing.gpu import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return None
    return (f'input "{asked[0]}" is "gpu", which needs CuPy and an NVIDIA GPU, but {reason}; '
            f'set it to "cpu" or "auto" (--set {asked[0]}=cpu)')


@contextlib.contextmanager
def dask_clients(addresses, gpu=False):
    """{address: Client} for each address asked for, every one connected before any job runs
    (so a bad address writes nothing); clusters closed on exit. `gpu`: the LocalCluster's
    workers one per GPU."""
    with contextlib.ExitStack() as stack:
        clients = {}
        for address in sorted(a for a in addresses if a is not None):
            clients[address] = stack.enter_context(cluster(address, "gpu" if gpu else "cpu"))
        yield clients


def _dask_call(client):
    """run_job's `call` for a job on Dask: integrate_scan of an HDF5 scan and reconstruct_scan
    there, others here."""
    from bliss_lite.processing.dask_integrate import integrate_scan_dask
    from bliss_lite.processing.dask_reconstruct import reconstruct_scan_dask
    from bliss_lite.processing.jobs import call_plugin

    def call(plugin, input):
        if plugin == "integrate_scan" and not input.get("cbf_folder"):
            return integrate_scan_dask(input, client)
        if plugin == "reconstruct_scan":
            return reconstruct_scan_dask(input, client)
        return call_plugin(plugin, input)

    return call


def _run_all(prepared, clients, output_dir):
    failed = 0
    for name, job, address in prepared:
        try:
            run_job(job, None if address is None else _dask_call(clients[address]))
        except KeyboardInterrupt:
            print(f"{name}: {job.plugin} aborted", file=sys.stderr)
            return 130
        target = output_path(name, output_dir)
        try:
            job.save(target)
        except (OSError, TypeError, ValueError) as exc:
            print(f"{name}: cannot write {target}: {exc}", file=sys.stderr)
            failed += 1
            continue
        summary = _summary(job, name, target)
        if job.status != "success":  # one line; the traceback is in the job written at `target`
            failed += 1
            summary += f" (traceback in {target})" if job.traceback else ""
        print(summary, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

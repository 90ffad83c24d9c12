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
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

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
        except (JobError, UsageError) as exc:
            bad.append(str(exc) if str(exc).startswith(name) else f"{name}: {exc}")
            continue
        prepared.append((name, Job(saved.plugin, input, reprocessed_from=saved.id)))
    if bad:
        for message in bad:
            print(f"bliss-lite reprocess: {message}", file=sys.stderr)
        print(f"bliss-lite reprocess: {len(bad)} bad job file(s); nothing run", file=sys.stderr)
        return 2

    failed = 0
    for name, job in prepared:
        try:
            run_job(job)
        except KeyboardInterrupt:
            print(f"{name}: {job.plugin} aborted", file=sys.stderr)
            return 130
        target = output_path(name, args.output)
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

"""What a job may name: paths below the job server's roots, entries as plain names.

A job submitted through a shared Redis is written by anyone who reaches that Redis, so the
job server runs it only if every path it names (the values of keys like `filename`, `folder`,
`poni`, `dark`, at any depth of the input) lies below one of its roots (by default the data
root and the configuration; its owner adds more with `bliss-lite job-server --root DIR`), and
every `entry` is a plain name (never "../../x"). Checked before the job starts; a refused job
ends in failure naming the key and the path.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from bliss_lite.config.file_checks import plain_name, within_roots

PATH_KEY = re.compile(r"(?:^|_)(?:filename|folder|file|path|poni|dark|flat|directory|dir|root)$")
ENTRY_KEY = re.compile(r"(?:^|_)entry$")


def _walk(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    else:
        yield where, value


def check_job_input(data, roots):
    """Raise FileCheckError naming the first path outside `roots` or entry not plain."""
    for where, value in _walk(data, ""):
        key = re.sub(r"\[\d+\]$", "", where).rsplit(".", 1)[-1]
        if isinstance(value, str) and PATH_KEY.search(key):
            within_roots(value, roots, f"job input {where}:")
        elif ENTRY_KEY.search(key) and value is not None:
            plain_name(str(value), f"job input {where}")


def default_roots():
    """The data root and the configuration directory, as this process sees them."""
    from bliss_lite.config.errors import ConfigError
    from bliss_lite.config.paths import config_dir
    from bliss_lite.scans.saving import DATA_ROOT_ENV, DEFAULT_BASE_PATH

    roots = [Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_BASE_PATH).expanduser()]
    try:
        roots.append(config_dir())
    except ConfigError:
        pass
    return roots

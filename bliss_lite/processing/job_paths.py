"""What a job may name: paths below the job server's roots, entries as plain names.

A job submitted through a shared Redis is written by anyone who reaches that Redis, so the
job server runs it only if every path it names (the values of keys like `filename`, `folder`,
`poni`, `dark`, at any depth of the input) lies below one of its roots (by default the data
root and the configuration; its owner adds more with `bliss-lite job-server --root DIR`), and
every `entry` is a plain name (never "../../x"). Path keys count in the plural too (`files`,
`filenames`: every item of the list), and an item of any list that is a path by its form
(absolute, `~`, or with a '..' component) is checked whatever its key. A `pattern` is a
file-name pattern of its folder only (`folder.glob("../../*.cbf")` lists files outside it), and
every file that a folder's pattern matches (all of its entries where no pattern is given) must
lie below the roots too: a link in the folder may point anywhere. Checked before the job
starts; a refused job ends in failure naming the key and the path or pattern.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from bliss_lite.config.file_checks import plain_name, plain_pattern, within_roots

PATH_KEY = re.compile(r"(?:^|_)(?:filenames?|folders?|files?|paths?|ponis?|darks?|flats?|director(?:y|ies)|dirs?"
                      r"|roots?)$")
ENTRY_KEY = re.compile(r"(?:^|_)entry$")
PATTERN_KEY = re.compile(r"(?:^|_)(?:pattern|glob)$")
FOLDER_KEY = re.compile(r"(?:^|_)folder$")


def _walk(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    else:
        yield where, value


def _dicts(value, where):
    if isinstance(value, dict):
        yield where, value
        for key, item in value.items():
            yield from _dicts(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _dicts(item, f"{where}[{i}]")


def _path_like(text):
    return text.startswith(("/", "~")) or ".." in text.split("/")


def check_job_input(data, roots):
    """Raise FileCheckError naming the first path outside `roots`, entry not plain, pattern
    reaching out of its folder, or file matched in a folder that lies outside `roots`."""
    for where, value in _walk(data, ""):
        key = re.sub(r"(?:\[\d+\])+$", "", where).rsplit(".", 1)[-1]
        in_list = where.endswith("]")
        if PATTERN_KEY.search(key) and value is not None:
            plain_pattern(value, f"job input {where}")
        elif isinstance(value, str) and (PATH_KEY.search(key) or in_list and _path_like(value)):
            within_roots(value, roots, f"job input {where}:")
        elif ENTRY_KEY.search(key) and value is not None:
            plain_name(str(value), f"job input {where}")
    for where, mapping in _dicts(data, ""):
        prefix = f"{where}." if where else ""
        patterns = [(f"{prefix}{k}={v!r} matched", v) for k, v in mapping.items()
                    if PATTERN_KEY.search(str(k)) and isinstance(v, str)] or [("an entry of it", "*")]
        for key, folder in mapping.items():
            if FOLDER_KEY.search(str(key)) and isinstance(folder, str) and os.path.isdir(folder):
                for matched, pattern in patterns:
                    for path in Path(folder).glob(pattern):
                        within_roots(path, roots, f"job input {prefix}{key} ({matched})")


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

"""Sessions: which configuration objects a shell gets, and the setup script it runs.

A session YAML names `config-objects` (default: every object that is not a session), may
`include-sessions`, may `exclude-objects`, and gives a `setup-file` (relative to the YAML
file) that runs in the session namespace. Objects are all built before the setup runs, so a
configuration error stops the session before anything moves.
"""
from __future__ import annotations

import traceback

from bliss_lite.config.errors import ConfigError, shown, where
from bliss_lite.config.fields import Field, read_fields
from bliss_lite.config.file_checks import FileCheckError, checked_file, plain_name, read_checked
from bliss_lite.config.settings import flush_pending
from bliss_lite.protocols import Axis, Counter, MeasurementGroup

_current = {"session": None}


def current_session():
    return _current["session"]


class SessionSetupError(Exception):
    """The setup script raised; the message carries its traceback."""


class Session:
    def __init__(self, name, config, objects, includes, excludes, setup_file):
        self.name = name
        self.config = config
        self._objects = objects
        self._includes = includes
        self._excludes = excludes
        self.setup_file = setup_file
        self.env_dict = {}
        self.objects = {}  # name -> object, the session's own configuration objects
        self.scan_saving_config = {}  # base_path, sample: read by bliss_lite.scans.saving
        self.processing_config = {}  # hook name -> options: read by bliss_lite.processing.hooks
        self.scan_limits_config = {}  # max_points, max_frames: read by bliss_lite.scans.limits
        self.suspenders_config = []  # YAML mappings: read by bliss_lite.scans.suspenders
        self.scan_context = None  # what its scans share (bliss_lite.scans.context), set by whoever opens it
        self.active_mg = None  # the measurement group counted when a scan names no counter

    def object_names(self, _seen=()):
        """Names of the objects this session (and what it includes) loads, in order."""
        if self.name in _seen:
            raise ConfigError(f"session '{self.name}': sessions include each other: {' -> '.join(_seen + (self.name,))}")
        names = []
        for include in self._includes:
            names.extend(include.object_names(_seen + (self.name,)))
        if self._objects is None:
            names.extend(n for n in self.config.names if not _is_session(self.config.get_node(n)))
        else:
            names.extend(self._objects)
        return [n for n in dict.fromkeys(names) if n not in self._excludes]

    def setup(self, env_dict=None):
        """Build every object into the namespace, restore the active measurement group, run setup."""
        env = self.env_dict = env_dict if env_dict is not None else {}
        _current["session"] = self
        self.objects = {name: self.config.get(name) for name in self.object_names()}
        env.update(self.objects)
        groups = self.measurement_groups
        saved = self.config.settings.get("session", self.name).get("active_mg")
        chosen = next((g for g in groups if g.name == saved), groups[0] if groups else None)
        if chosen is not None:
            chosen.set_active()
        env.setdefault("SESSION", self)
        for path in self._setup_files():
            self._run_setup(path, env)
        return env

    def _setup_files(self):
        files = []
        for include in self._includes:
            files.extend(f for f in include._setup_files() if f not in files)
        if self.setup_file is not None and self.setup_file not in files:
            files.append(self.setup_file)
        return files

    def _run_setup(self, path, env):
        try:  # checked when configured, again here: it may have changed since (a FIFO would block)
            text = read_checked(path, "script", "setup file").decode("utf-8")
        except FileCheckError as exc:
            raise SessionSetupError(f"session '{self.name}': {exc}") from None
        except UnicodeDecodeError:
            raise SessionSetupError(f"session '{self.name}': setup file {path}: not UTF-8 text") from None
        code = compile(text, str(path), "exec")
        env["__file__"] = str(path)
        try:
            exec(code, env)  # noqa: S102 - the session's own setup script
        except Exception as exc:
            raise SessionSetupError(
                f"session '{self.name}': setup file {path} failed:\n{traceback.format_exc()}"
            ) from exc
        finally:
            env.pop("__file__", None)

    @property
    def axes(self):
        return [obj for obj in self.objects.values() if isinstance(obj, Axis)]

    @property
    def counters(self):
        return [obj for obj in self.objects.values() if is_counter(obj)]

    @property
    def measurement_groups(self):
        return [obj for obj in self.objects.values() if is_measurement_group(obj)]

    def close(self):
        """Let moves still running end (their positions are then saved); Ctrl-C stops them."""
        try:
            for axis in self.axes:
                if axis.is_moving:
                    try:
                        axis.wait_move()
                    except KeyboardInterrupt:
                        for other in self.axes:
                            other.stop()
                        raise
        finally:
            try:
                if self.scan_context is not None:
                    self.scan_context.close()
            finally:
                flush_pending()

    def __info__(self):
        setup = self.setup_file or "none"
        return f"Session '{self.name}': {len(self.object_names())} objects, setup file {setup}"

    def __repr__(self):
        return f"<Session {self.name}>"


def is_counter(obj):
    """Something `ct` and scans can read (protocols.Counter): `read(count_time)` and a full name."""
    return isinstance(obj, Counter)


def is_measurement_group(obj):
    return isinstance(obj, MeasurementGroup)


def _is_session(node):
    return str(node.get("class", "")).lower() == "session" or node.get("plugin") == "session"


SESSION_FIELDS = (
    Field("config-objects", "list", None),
    Field("include-sessions", "list", []),
    Field("exclude-objects", "list", []),
    Field("setup-file", "str", None),
    Field("scan_saving", "any", None),
    Field("processing", "any", None),
    Field("scan_limits", "any", None),
    Field("suspenders", "list", []),
)
SCAN_LIMIT_KEYS = ("max_points", "max_frames")  # bliss_lite.scans.limits holds the defaults
SCAN_SAVING_KEYS = ("base_path", "sample")


def _is_string(item):
    return isinstance(item, str)


def _is_whole_positive(item):
    return not isinstance(item, bool) and isinstance(item, int) and item >= 1


def _settings(node, what, field, value, keys, valid, kind):
    """`field: {key: value}` with known keys whose values pass `valid` (`kind` names what they
    must be), checked where it enters; {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where(node, field)}: {what}: {field} must be a mapping, got {shown(value)}")
    for key, item in value.items():
        if key not in keys:
            raise ConfigError(f"{where(node, field)}: {what}: {field}: unknown key {shown(key)} "
                              f"(known: {', '.join(keys)})")
        if not valid(item):
            raise ConfigError(f"{where(node, field)}: {what}: {field}: {key} must be {kind}, got {shown(item)}")
    return dict(value)


def _scan_saving(node, what, value):
    """`scan_saving: {base_path: DIR, sample: NAME}`; the sample is a file name, never a path."""
    settings = _settings(node, what, "scan_saving", value, SCAN_SAVING_KEYS, _is_string, "a string")
    if "sample" in settings:
        try:
            plain_name(settings["sample"], "scan_saving.sample")
        except FileCheckError as exc:
            raise ConfigError(f"{where(node, 'scan_saving')}: {what}: {exc}") from None
    return settings


def _scan_limits(node, what, value):
    """`scan_limits: {max_points: N, max_frames: N}`: whole numbers >= 1."""
    return _settings(node, what, "scan_limits", value, SCAN_LIMIT_KEYS, _is_whole_positive, "a whole number >= 1")


def _processing(node, what, value):
    """`processing: {hook name: {options} or null}`: the hooks of the session's XRD-CT scans.
    The structure is checked here; names and options when a scan makes its hooks (the
    processing layer sits above configuration), still before anything moves."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where(node, 'processing')}: {what}: processing must be a mapping of hook name to "
                          f"options, got {shown(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{where(node, 'processing')}: {what}: processing: hook name must be a name, got {shown(key)}")
        if item is not None and not isinstance(item, dict):
            raise ConfigError(f"{where(node, 'processing')}: {what}: processing: {key}: options must be a mapping, "
                              f"got {shown(item)}")
    return {k: dict(v or {}) for k, v in value.items()}


def create_session(name, node, config):
    what = f"session '{name}'"
    values = read_fields(node, SESSION_FIELDS, what)
    objects = values["config-objects"]
    for key in ("config-objects", "exclude-objects"):
        for item in values[key] or []:
            item = item[1:] if isinstance(item, str) and item.startswith("$") else item
            if item not in config.names:
                raise ConfigError(f"{where(node, key)}: {what}: {key}: no object named {shown(item)}")
    strip = lambda items: [i[1:] if i.startswith("$") else i for i in items]  # noqa: E731
    includes = []
    for item in values["include-sessions"]:
        if str(item).lstrip("$") == name:
            raise ConfigError(f"{where(node, 'include-sessions')}: {what}: include-sessions: a session cannot include itself")
        included = config.get(item[1:] if str(item).startswith("$") else item) if str(item).lstrip("$") in config.names else None
        if not isinstance(included, Session):
            raise ConfigError(f"{where(node, 'include-sessions')}: {what}: {shown(item)} is not a session")
        includes.append(included)
    setup = values["setup-file"]
    setup_path = None
    if setup is not None:
        try:
            setup_path = config.file_beside(node, setup)
            found = setup_path.exists()
        except (ValueError, OSError) as exc:  # a NUL byte, a name too long
            raise ConfigError(f"{where(node, 'setup-file')}: {what}: setup-file {shown(setup)}: {exc}") from None
        if not found:
            raise ConfigError(f"{where(node, 'setup-file')}: {what}: setup-file {setup} not found (looked at {setup_path})")
        try:  # a regular file of bounded size: a FIFO or /dev/zero would block or fill the shell
            checked_file(setup_path, "script")
        except FileCheckError as exc:
            raise ConfigError(f"{where(node, 'setup-file')}: {what}: setup-file {setup_path}: {exc.reason}") from None
    session = Session(name, config, None if objects is None else strip(objects), includes,
                      strip(values["exclude-objects"]), setup_path)
    session.scan_saving_config = _scan_saving(node, what, values["scan_saving"])
    session.processing_config = _processing(node, what, values["processing"])
    session.scan_limits_config = _scan_limits(node, what, values["scan_limits"])
    session.suspenders_config = list(values["suspenders"])  # checked once the objects exist
    return session

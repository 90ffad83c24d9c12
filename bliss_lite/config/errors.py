"""The one error type of the configuration layer: it always says where (file:line) and what."""
import reprlib

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlist = _short.maxdict = _short.maxset = _short.maxtuple = 6
_short.maxlevel = 3


class ConfigError(Exception):
    """A problem in the YAML beamline database, raised before anything is built or moved."""


_NODE = object()  # no key given: the node's own line (a YAML key may itself be null)


def where(node, key=_NODE):
    """'file:line' of a node, or of one of its keys, when the loader recorded it."""
    filename = getattr(node, "filename", None) or "<config>"
    line = None
    if key is not _NODE and key in getattr(node, "inherited", {}):
        return node.inherited[key]
    if key is not _NODE:
        line = getattr(node, "key_lines", {}).get(key)
    if line is None:
        line = getattr(node, "line", None)
    return f"{filename}:{line}" if line else filename


def shown(value):
    """repr of a configuration value cut to one short line: a message quotes it, never dumps it."""
    return _short.repr(value).replace("\n", "\\n")

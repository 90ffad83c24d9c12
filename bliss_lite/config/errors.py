"""The one error type of the configuration layer: it always says where (file:line) and what."""


class ConfigError(Exception):
    """A problem in the YAML beamline database, raised before anything is built or moved."""


def where(node, key=None):
    """'file:line' of a node, or of one of its keys, when the loader recorded it."""
    filename = getattr(node, "filename", None) or "<config>"
    line = None
    if key is not None and key in getattr(node, "inherited", {}):
        return node.inherited[key]
    if key is not None:
        line = getattr(node, "key_lines", {}).get(key)
    if line is None:
        line = getattr(node, "line", None)
    return f"{filename}:{line}" if line else filename

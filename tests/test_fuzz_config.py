"""Fuzzing the YAML beamline database: whatever is in the files, loading either builds objects
holding exactly the values written, or raises ConfigError naming the file (and the line, where
YAML has one) and the object or key; never another exception, never a hang.

Valid configurations (mockup axes, diodes, a counter following an axis, a measurement group, a
session, an `__init__.yml` giving inherited keys) are generated, then one mutation is applied:
a wrong value, a missing key, a duplicate or non-identifier name, an unknown class or key,
inverted limits, a YAML tag, a tab, broken syntax, random unicode, deep nesting, aliases.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bliss_lite.config import Config, ConfigError
from bliss_lite.config.session import Session
from bliss_lite.config.settings import SettingsStore
from bliss_lite.config.yaml_loader import MAX_DEPTH, load_yaml_text

# BLISS_LITE_FUZZ_EXAMPLES=5000 for a deeper search than CI's
FUZZ = settings(max_examples=int(os.environ.get("BLISS_LITE_FUZZ_EXAMPLES", 150)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- valid configurations ----------------------------------------------------------------------
finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-3, max_value=1e4)
spu = st.one_of(st.floats(min_value=1.0, max_value=1e5), st.floats(min_value=-1e5, max_value=-1.0))


@st.composite
def axis_node(draw, name):
    node = {"name": name, "steps_per_unit": draw(spu), "velocity": draw(positive),
            "acceleration": draw(positive)}
    for key, value in (("backlash", finite), ("tolerance", st.floats(0, 1)), ("position", finite),
                       ("sign", st.sampled_from([1, -1])), ("unit", st.sampled_from(["mm", "deg", ""]))):
        if draw(st.booleans()):
            node[key] = draw(value)
    if draw(st.booleans()):
        low, high = sorted((draw(finite), draw(finite)))
        node.update(low_limit=low, high_limit=high)
    return node


@st.composite
def beamline(draw):
    """{relative file name: list of object mappings}: a configuration that loads."""
    n_axes = draw(st.integers(1, 3))
    axes = [draw(axis_node(f"ax{i}")) for i in range(n_axes)]
    controller = {"class": "mockup", "name": "ctl", "axes": axes}
    diodes = [{"name": f"d{i}", "mean": draw(finite), "noise": draw(st.floats(0, 1)), "seed": draw(st.integers(0, 99))}
              for i in range(draw(st.integers(1, 2)))]
    counter = {"name": "peak", "class": "simulation_counter", "distribution": "gaussian", "axis": "$ax0",
               "center": draw(finite), "fwhm": draw(positive), "height": draw(finite)}
    group = {"name": "mg", "class": "measurement_group", "counters": [f"${d['name']}" for d in diodes] + ["$peak"]}
    session = {"name": "sess", "class": "session", "config-objects": ["ax0", "mg"],
               "scan_saving": {"base_path": "/tmp/data", "sample": draw(st.sampled_from(["s1", "sample_2"]))}}
    files = {"motors.yml": [controller], "counters.yml": [counter, group], "sessions/sess.yml": [session]}
    if draw(st.booleans()):  # the diodes' class inherited from an __init__.yml
        files["diodes/__init__.yml"] = {"class": "simulation_diode"}
        files["diodes/diodes.yml"] = diodes
    else:
        files["counters.yml"] = [dict(d, **{"class": "simulation_diode"}) for d in diodes] + files["counters.yml"]
    return files


def objects_of(files):
    """(file, object mapping) of every named object, axes included."""
    for filename, content in files.items():
        if filename.endswith("__init__.yml"):
            continue
        for obj in content:
            yield filename, obj
            for axis in obj.get("axes", []) if isinstance(obj.get("axes"), list) else []:
                if isinstance(axis, dict):
                    yield filename, axis


# -- mutations ---------------------------------------------------------------------------------
weird = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0, 0.0, -0.0, -1, -1e-9,
                     10**30, 2**63, True, False, None, "", "fast", "5", "1e3", "$ax0", "$nope", "é", [], [1], {},
                     {"a": 1}, [[1]], "\t", "x" * 300]),
    st.text(max_size=12), st.integers(), st.floats(), st.lists(st.integers(), max_size=3))
MUST_FAIL = {"nan", "inf", "-inf", "fast", "list", "dict", "bool"}


def kind_of(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "fast" if value == "fast" else "other"


NUMBER_KEYS = {"steps_per_unit", "velocity", "acceleration", "backlash", "tolerance", "position", "low_limit",
               "high_limit", "mean", "noise", "center", "fwhm", "height"}


@st.composite
def structural(draw, files):
    """Mutate the objects; returns (files, description, names the message may give, must_fail)."""
    targets = list(objects_of(files))
    filename, obj = draw(st.sampled_from(targets))
    label = obj.get("name")
    action = draw(st.sampled_from(["value", "delete", "duplicate", "class", "unknown_key", "limits", "name", "ref"]))
    if action == "value":
        key = draw(st.sampled_from(sorted(k for k in obj if k != "name")))
        value = draw(weird)
        obj[key] = value
        must = key in NUMBER_KEYS and kind_of(value) in MUST_FAIL or key == "axis" and not (
            isinstance(value, str) and value.startswith("$") and value[1:] in {"ax0", "ax1", "ax2"})
        return files, f"{label}.{key} = {value!r}", {label, key}, must
    if action == "delete":
        key = draw(st.sampled_from(sorted(obj)))
        del obj[key]
        must = key in ("steps_per_unit", "velocity", "acceleration", "axes", "counters") or (
            key == "name" and "axes" not in obj)  # a controller may be unnamed: its axes are named
        return files, f"del {label}.{key}", {label, key, "name"}, must
    if action == "duplicate":
        _, other = draw(st.sampled_from([t for t in targets if t[1] is not obj]))
        obj["name"] = other["name"]
        return files, f"{label} renamed {other['name']}", {other["name"], label}, True
    if action == "class":
        value = draw(st.one_of(st.text(max_size=10), st.sampled_from(["mokup", "session", "measurement_group",
                                                                     "simulation_counter", 5, None, ["mockup"]])))
        obj["class"] = value
        return files, f"{label}.class = {value!r}", {label, "class"}, False
    if action == "unknown_key":
        key = draw(st.one_of(st.text(min_size=1, max_size=10), st.sampled_from(["velocty", "axis", "counters"])))
        obj.setdefault(key, draw(weird))
        return files, f"{label}.{key!r} added", {label, key}, False
    if action == "limits":
        low, high = sorted((draw(finite), draw(finite)))
        if low == high:
            high = low + 1.0
        obj.update(low_limit=high, high_limit=low)
        return files, f"{label}: low_limit {high} > high_limit {low}", {label, "low_limit"}, "steps_per_unit" in obj
    value = draw(st.one_of(st.text(max_size=8), st.sampled_from(["2bad", "a b", "class", "é", "ax_é", "None"])))
    if action == "name":
        obj["name"] = value
        return files, f"{label} renamed {value!r}", {label, value, "name"}, not value.isidentifier()
    obj_with_refs = [o for _, o in targets if "counters" in o or "axis" in o]
    target = draw(st.sampled_from(obj_with_refs))
    key = "counters" if "counters" in target else "axis"
    target[key] = [f"${value}"] if key == "counters" else f"${value}"
    return files, f"{target['name']}.{key} -> ${value}", {target["name"], key, value}, value not in {
        o.get("name") for _, o in targets}


TAGS = ["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!python/object:os.stat {}",
        "!custom", "!!binary aGVsbG8=", "!!set", "!!timestamp", "!!str", "!!float", "!!int", "!!bool", "!!null"]


@st.composite
def textual(draw, text):
    """Mutate the YAML text of one file; returns (text, description, must_fail)."""
    lines = text.splitlines(keepends=True)
    action = draw(st.sampled_from(["tab", "char", "truncate", "unicode", "tag", "deep", "aliases"]))
    i = draw(st.integers(0, len(lines) - 1))
    if action == "tab":
        lines[i] = "\t" + lines[i]
        return "".join(lines), f"tab before line {i + 1}", False
    if action == "char":
        pos = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(list(":[]{}&*!|>'\"%@`#,-?\x00\x07\x1b\u2028\ufeff")))
        return text[:pos] + char + text[pos:], f"{char!r} at {pos}", char in "\x00\x07\x1b"
    if action == "truncate":
        pos = draw(st.integers(0, len(text)))
        return text[:pos], f"cut at {pos}", False
    if action == "unicode":
        pos = draw(st.integers(0, len(text)))
        inserted = draw(st.text(min_size=1, max_size=8))
        return text[:pos] + inserted + text[pos:], f"{inserted!r} at {pos}", False
    values = [j for j, line in enumerate(lines) if re.search(r": \S", line)]
    if not values:
        return text, "unchanged", False
    j = draw(st.sampled_from(values))
    head, _, tail = lines[j].partition(": ")
    if action == "tag":
        tag = draw(st.sampled_from(TAGS))
        lines[j] = f"{head}: {tag} {tail}" if not tag.endswith(("]", "}", "=", "system")) else f"{head}: {tag}\n"
        return "".join(lines), f"line {j + 1}: {tag}", tag.startswith(("!!python", "!custom"))
    if action == "deep":
        depth = draw(st.integers(1, MAX_DEPTH + 20))
        lines[j] = f"{head}: {'[' * depth}{']' * depth}\n"
        return "".join(lines), f"line {j + 1}: nested {depth} deep", depth > MAX_DEPTH
    indent = len(head) - len(head.lstrip(" -"))
    bomb = "".join(f"{' ' * indent}_l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9) if k else '1'}]\n" for k in range(8))
    lines[j] = lines[j] + bomb
    return "".join(lines), f"aliases after line {j + 1}", True


def dump(files):
    return {name: yaml.safe_dump(content, allow_unicode=True, sort_keys=False) for name, content in files.items()}


# -- the property ------------------------------------------------------------------------------
def load_everything(texts):
    """Write the files, load the configuration, build every object and the session's list."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cfg"
        for name, text in texts.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        config = Config(root, SettingsStore(Path(tmp) / "run"))
        built = {name: config.get(name) for name in config.names}
        for obj in built.values():
            if isinstance(obj, Session):
                obj.object_names()
        return config, built


def number_of(raw):
    """What a number field must hold for a raw YAML value (None: not a number)."""
    if isinstance(raw, str) and re.fullmatch(r"[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+", raw):
        return float(raw.replace("_", ""))  # PyYAML writes '1e3' plain: YAML 1.2 reads it as a number
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    return float(raw)


def check_values(files, built):
    """Every object holds exactly the values its mapping gave (a null value means the default)."""
    for _, node in objects_of(files):
        if "name" not in node:
            continue
        node = {k: v for k, v in node.items() if v is not None}
        obj = built[node["name"]]
        if "steps_per_unit" in node:  # an axis
            for key in ("steps_per_unit", "velocity", "acceleration", "backlash", "tolerance"):
                if key in node:
                    assert getattr(obj, key) == number_of(node[key]), (key, node)
            if "sign" in node:
                assert obj.sign == node["sign"] and not isinstance(node["sign"], bool)
            if "unit" in node:
                assert obj.unit == node["unit"]
            if "low_limit" in node:
                assert obj.dial_limits[0] == number_of(node["low_limit"])
            if "high_limit" in node:
                assert obj.dial_limits[1] == number_of(node["high_limit"])
        elif node.get("class", "simulation_diode") == "simulation_diode" and "mean" in node:
            assert obj.height == number_of(node["mean"]) and obj.noise == number_of(node.get("noise", 0.01))
        elif "distribution" in node:
            for key, default in (("center", 0.0), ("fwhm", 1.0), ("height", 1.0)):
                assert getattr(obj, key) == number_of(node.get(key, default)), key
            assert obj.axis is built[node["axis"][1:]]
        elif "counters" in node and node.get("class") == "measurement_group":
            assert [c.name for c in obj.counters] == [ref[1:] for ref in node["counters"]]


def check_error(message, texts, names, yaml_level):
    """The message names a file of the configuration, a line for YAML problems, and what is wrong."""
    assert "\n" not in message, message
    file_part = re.match(r"^(?P<file>[^:]+?)(?::(?P<line>\d+))?: ", message)
    assert file_part and file_part["file"] in texts, message
    if "YAML syntax error" in message or "unsupported YAML" in message:
        assert file_part["line"], message
    elif not yaml_level:
        shown = {str(n) for n in names if n is not None and str(n)}
        assert any(n in message or repr(n)[1:-1] in message for n in shown), (message, names)


@FUZZ
@given(beamline())
def test_the_generated_configurations_load(files):
    """The generator's base case: a valid configuration builds, values as written."""
    _, built = load_everything(dump(files))
    check_values(files, built)
    assert built["sess"].object_names() == ["ax0", "mg"]


@FUZZ
@given(st.data())
def test_mutated_objects_load_or_name_the_problem(data):
    files = data.draw(beamline())
    files, what, names, must_fail = data.draw(structural(files))
    texts = dump(files)
    try:
        _, built = load_everything(texts)
    except ConfigError as exc:
        event(f"refused: {str(exc).split(': ', 2)[1][:40]}")
        check_error(str(exc), texts, names | {o.get("name") for _, o in objects_of(files)}, yaml_level=False)
        return
    event("loaded")
    assert not must_fail, f"accepted: {what}"
    check_values(files, built)


@FUZZ
@given(st.data())
def test_mutated_yaml_text_loads_or_names_file_and_line(data):
    files = data.draw(beamline())
    texts = dump(files)
    name = data.draw(st.sampled_from(sorted(texts)))
    texts[name], what, must_fail = data.draw(textual(texts[name]))
    try:
        load_everything(texts)
    except ConfigError as exc:
        event(f"refused: {str(exc).split(': ', 2)[1][:40]}")
        check_error(str(exc), texts, set(), yaml_level=True)
        return
    event("loaded")
    assert not must_fail, f"accepted: {what}"


# -- regressions: each bug the fuzzer found, as a plain example --------------------------------
def error_of(files):
    with pytest.raises(ConfigError) as info:
        load_everything(files)
    return str(info.value)


DIODE = "- name: d\n  class: simulation_diode\n"
AXIS = "- class: mockup\n  name: ctl\n  axes:\n    - name: m0\n      steps_per_unit: 100\n      velocity: 5\n" \
       "      acceleration: 10\n"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 900])
def test_deep_nesting_is_refused_with_file_and_line(depth):
    """Was a RecursionError from PyYAML's constructor (from ~300 levels)."""
    message = error_of({"a.yml": DIODE + f"  _x: {'[' * depth}{']' * depth}\n"})
    assert message == f"a.yml:3: lists and mappings nested more than {MAX_DEPTH} deep"
    load_everything({"a.yml": DIODE + f"  _x: {'[' * 20}{']' * 20}\n"})  # a sane depth still loads


def test_alias_bomb_is_refused_before_it_expands():
    """Was a hang: references were searched through 2**25 shared lists ("billion laughs")."""
    bomb = "".join(f"  _x{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 2) if k else '1, 1'}]\n" for k in range(26))
    message = error_of({"a.yml": DIODE + bomb})
    assert re.fullmatch(r"a.yml:\d+: aliases expand to more than 1,000,000 values", message), message
    _, built = load_everything({"a.yml": "- &d\n  name: d\n  class: simulation_diode\n  mean: 3.0\n"
                                "- name: e\n  <<: *d\n"})
    assert built["e"].height == 3.0  # merge keys (aliases used sanely) still work


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("2E5", 2e5), ("-1.5e+2", -150.0), ("1_000.5", 1000.5)])
def test_exponent_floats_are_numbers(text, value):
    """YAML 1.1 (PyYAML) read `1e-3` as the string '1e-3': "must be a finite number, got '1e-3'"."""
    _, built = load_everything({"a.yml": DIODE + f"  mean: {text}\n"})
    assert built["d"].height == value
    assert load_yaml_text(f"x: {text}")["x"] == value


@pytest.mark.parametrize("module, problem", [
    ("''", "module must be a module name, got ''"),
    ("'.relative'", "cannot import module '.relative'"),
    ("5", "module must be a module name, got 5"),
])
def test_bad_module_names(module, problem):
    """'' and '.relative' leaked ValueError and TypeError from importlib."""
    message = error_of({"a.yml": f"- name: d\n  class: Thing\n  module: {module}\n"})
    assert message.startswith("a.yml:3: ") and problem in message, message


def test_control_character_gives_one_line_with_the_line_number():
    """Was a two-line message without a line ('in "<unicode string>", position 35')."""
    message = error_of({"a.yml": DIODE + "  unit: a\x00b\n"})
    assert message == "a.yml:3: YAML error: character #x0000 not allowed (control characters are not allowed)"


@pytest.mark.parametrize("line, key", [
    ("      velocity: 1.0e+308\n", "velocity"), ("      position: 1.0e+307\n", "position"),
    ("      low_limit: -1.0e+307\n", "low_limit"), ("      backlash: 1.0e+307\n", "backlash"),
])
def test_values_too_large_in_steps_are_refused(line, key):
    """position 1e308 gave "mockup 'ctl': cannot be created: cannot convert float infinity to integer"."""
    text = AXIS.replace("      velocity: 5\n", "") + ("      velocity: 5\n" if key != "velocity" else "") + line
    message = error_of({"a.yml": text})
    assert re.fullmatch(rf"a.yml:\d+: axis 'm0': {key} -?1e\+30[78] is too large in steps \(steps_per_unit 100\)",
                        message), message


def test_null_key_is_located_and_long_values_are_cut():
    """A `null:` key was reported at the object's line; a huge value was dumped whole."""
    assert error_of({"a.yml": DIODE + "  null: 1\n"}) == "a.yml:3: diode 'd': unknown key None"
    message = error_of({"a.yml": DIODE + f"  mean: {'x' * 5000}\n"})
    assert message.startswith("a.yml:3: diode 'd': mean must be a finite number, got 'xxx") and len(message) < 150


@pytest.mark.parametrize("tag", ["!!python/object:os.system {}", "!!python/object/apply:os.system ['true']",
                                 "!!python/name:os.system", "!!python/module:os"])
def test_python_tags_are_refused_with_file_and_line(tag):
    message = error_of({"a.yml": f"- name: d\n  class: simulation_diode\n  unit: {tag}\n"})
    assert message.startswith("a.yml:3: unsupported YAML: could not determine a constructor for the tag")


def test_names_python_would_rewrite_are_refused():
    """'ﬁt' is an identifier, but Python reads it as 'fit': the object could never be typed."""
    assert error_of({"a.yml": "- name: ﬁt\n  class: simulation_diode\n"}) == \
        "a.yml:1: name 'ﬁt' is read by Python as 'fit': write it that way"
    _, built = load_everything({"a.yml": "- name: café\n  class: simulation_diode\n"})
    assert built["café"].name == "café"


def test_unusable_setup_file_name_names_the_key():
    """A NUL byte in setup-file gave "session 's': cannot be created: embedded null byte" at the object."""
    message = error_of({"a.yml": '- name: s\n  class: session\n  setup-file: "a\\0b.py"\n'})
    assert message == "a.yml:3: session 's': setup-file 'a\\x00b.py': embedded null byte"


@pytest.mark.parametrize("value, problem", [
    ("x", "sample must be a reference to an object ($name), got 'x'"),
    ("5", "sample must be a reference to an object ($name), got 5"),
    ("$d", "$d is not a sample"),
])
def test_references_must_be_references_to_the_right_kind(value, problem):
    """A 'ref' key took any value (`sample: x`, `sample: 5`, a diode): the detector failed at its first frame."""
    message = error_of({"a.yml": DIODE + f"- name: p\n  class: pilatus2m\n  sample: {value}\n"})
    assert message == f"a.yml:5: detector 'p': {problem}"


@pytest.mark.parametrize("text", [
    '- name: d\n  class: "simulation\\ndiode"\n',
    '- name: d\n  class: simulation_diode\n  unit: "$a\\nb"\n',
    '- name: d\n  class: simulation_diode\n  plugin: "x\\ny"\n',
    '- name: d\n  class: Thing\n  module: "a\\nb"\n',
])
def test_messages_stay_on_one_line(text):
    """A class name with a newline was quoted raw: "unknown class '\\n'" over two lines."""
    message = error_of({"a.yml": text})
    assert "\n" not in message and re.match(r"a.yml:\d: ", message), message

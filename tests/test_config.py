"""The YAML beamline database: shipped sessions, inheritance, references, and every error."""
import math
import re

import pytest
from conftest import write_config

from bliss_lite.config import Config, ConfigError
from bliss_lite.config.settings import SettingsStore

AXIS = """- class: mockup
  name: ctrl
  axes:
    - name: m0
      steps_per_unit: 100
      velocity: {velocity}
      acceleration: 10
"""

DEMO_TABLE = """srot deg 400 5 20 0.1 -1000 1000
sby mm 200 5 20 0.1 -1000 1000
sbz mm 200 5 20 0.1 -1000 1000
tx mm -100 5 20 0.1 -1000 1000
mz mm 200 5 20 0.1 -1000 1000
oy mm 250 1.5 20 0.1 -1000 1000
oz mm 20000 0.1 4 0.1 -20 20
optch deg 400 5 20 0.1 -1000 1000
say2 mm -200 2 8 0.1 -1000 1000
camt deg 200 2 20 0.1 -1000 1000"""


def load(tmp_path, files):
    return Config(write_config(tmp_path / "cfg", files), SettingsStore(tmp_path / "run"))


def error_of(tmp_path, files, name=None):
    with pytest.raises(ConfigError) as info:
        config = load(tmp_path, files)
        if name:
            config.get(name)
    return str(info.value)


def test_demo_axes_have_the_beamline_table_values(config):
    for row in DEMO_TABLE.splitlines():
        name, unit, spu, velocity, acceleration, backlash, low, high = row.split()
        axis = config.get(name)
        assert (axis.unit, axis.steps_per_unit, axis.velocity, axis.acceleration, axis.backlash) == (
            unit, float(spu), float(velocity), float(acceleration), float(backlash))
        assert axis.limits == (float(low), float(high))


def test_demo_session_objects(config):
    from bliss_lite.config.session import Session

    demo = config.get("demo")
    assert isinstance(demo, Session)
    names = demo.object_names()
    for expected in ("srot", "camt", "omega", "x", "z", "i0", "it", "ring_current", "demo_mg"):
        assert expected in names
    assert config.get("omega").velocity == 360 and config.get("omega").limits == (-math.inf, math.inf)
    assert [c.name for c in config.get("demo_mg").counters] == ["i0", "it", "ring_current", "xtal"]


def test_test_session_objects(config):
    names = config.get("test").object_names()
    assert names[:4] == ["m0", "m1", "m2", "m3"]
    assert {"diode1", "diode2", "diode3", "gauss", "omega", "x", "z"} <= set(names)
    gauss = config.get("gauss")
    assert gauss.axis is config.get("m0") and gauss.center == 5.0 and gauss.fwhm == 1.0


def test_init_yml_keys_are_inherited(tmp_path):
    config = load(tmp_path, {
        "__init__.yml": "plugin: emotion\n",
        "sub/__init__.yml": "class: mockup\n",
        "sub/motors.yml": AXIS.format(velocity=5).replace("- class: mockup\n  name", "- name"),
    })
    node = config.get_node("ctrl")
    assert node["plugin"] == "emotion" and node["class"] == "mockup"
    assert config.get("m0").velocity == 5


def test_references_resolve_to_objects(tmp_path):
    config = load(tmp_path, {
        "motors.yml": AXIS.format(velocity=5),
        "cnt.yml": "- name: g\n  class: simulation_counter\n  distribution: gaussian\n  axis: $m0\n",
    })
    assert config.get("g").axis is config.get("m0")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = error_of(tmp_path, {"motors.yml": "- name: a\n  axes: [1, 2\n  b: 3\n"})
    assert re.match(r"motors.yml:\d+: YAML syntax error", message), message


def test_unsafe_yaml_tag_is_refused(tmp_path):
    message = error_of(tmp_path, {"evil.yml": "- name: x\n  class: !!python/object/apply:os.system ['true']\n"})
    assert "evil.yml:2" in message and "unsupported YAML" in message


def test_mistyped_value_names_file_line_object_and_key(tmp_path):
    message = error_of(tmp_path, {"motors.yml": AXIS.format(velocity='"fast"')}, "m0")
    assert message == "motors.yml:6: axis 'm0': velocity must be a finite number, got 'fast'"


def test_unknown_key_suggests_the_right_one(tmp_path):
    text = AXIS.format(velocity=5).replace("acceleration", "acceleraton")
    message = error_of(tmp_path, {"motors.yml": text}, "m0")
    assert message.startswith("motors.yml:7: axis 'm0': unknown key 'acceleraton'")
    assert "did you mean 'acceleration'" in message


def test_missing_key(tmp_path):
    text = AXIS.format(velocity=5).replace("      acceleration: 10\n", "")
    message = error_of(tmp_path, {"motors.yml": text}, "m0")
    assert message == "motors.yml:4: axis 'm0': missing key 'acceleration'"


def test_non_positive_and_inverted_limits(tmp_path):
    message = error_of(tmp_path, {"motors.yml": AXIS.format(velocity=-1)}, "m0")
    assert "motors.yml:6" in message and "velocity must be > 0, got -1" in message
    text = AXIS.format(velocity=5) + "      low_limit: 5\n      high_limit: 1\n"
    message = error_of(tmp_path, {"motors.yml": text}, "m0")
    assert "motors.yml:8" in message and "low_limit 5.0 is above high_limit 1.0" in message


def test_unknown_class(tmp_path):
    message = error_of(tmp_path, {"motors.yml": AXIS.format(velocity=5).replace("mockup", "mokup")}, "m0")
    assert message.startswith("motors.yml:1: controller 'ctrl': unknown class 'mokup'") or \
        message.startswith("motors.yml:1: mokup 'ctrl': unknown class 'mokup'")
    assert "mockup" in message  # the known classes are listed


def test_wrong_plugin(tmp_path):
    text = AXIS.format(velocity=5).replace("  name: ctrl", "  name: ctrl\n  plugin: session")
    message = error_of(tmp_path, {"motors.yml": text}, "m0")
    assert "motors.yml:3" in message and "belongs to plugin 'emotion'" in message


def test_duplicate_name_names_both_places(tmp_path):
    message = error_of(tmp_path, {
        "a.yml": AXIS.format(velocity=5),
        "b.yml": "- name: m0\n  class: simulation_diode\n",
    })
    assert message == "b.yml:1: duplicate name 'm0' (already defined at a.yml:4)"


def test_dangling_reference(tmp_path):
    message = error_of(tmp_path, {"cnt.yml": "- name: mg\n  class: measurement_group\n  counters: [$nope]\n"})
    assert message == "cnt.yml:3: 'mg': key 'counters': reference '$nope' names no object in the configuration"


def test_reference_to_the_wrong_kind_of_object(tmp_path):
    message = error_of(tmp_path, {
        "motors.yml": AXIS.format(velocity=5),
        "cnt.yml": "- name: mg\n  class: measurement_group\n  counters: [$m0]\n",
    }, "mg")
    assert "cnt.yml:3" in message and "is not a counter" in message


def test_circular_reference(tmp_path):
    message = error_of(tmp_path, {
        "cnt.yml": "- name: a\n  class: measurement_group\n  counters: [$b]\n"
                   "- name: b\n  class: measurement_group\n  counters: [$a]\n",
    }, "a")
    assert "circular reference: a -> b -> a" in message


def test_object_without_name_and_bad_name(tmp_path):
    assert "x.yml:1: object has no 'name'" == error_of(tmp_path, {"x.yml": "- class: simulation_diode\n"})
    message = error_of(tmp_path, {"x.yml": "- name: 2bad\n  class: simulation_diode\n"})
    assert message.startswith("x.yml:1: name must be a Python identifier")


def test_session_errors(tmp_path):
    base = {"motors.yml": AXIS.format(velocity=5)}
    message = error_of(tmp_path, {**base, "s.yml": "- name: s\n  class: session\n  config-objects: [m0, m9]\n"}, "s")
    assert "s.yml:3" in message and "no object named 'm9'" in message
    message = error_of(tmp_path, {**base, "s.yml": "- name: s\n  class: session\n  setup-file: nope.py\n"}, "s")
    assert "s.yml:3" in message and "setup-file nope.py not found" in message


def test_session_includes_and_setup(tmp_path, run_dir):
    config = load(tmp_path, {
        "motors.yml": AXIS.format(velocity=5),
        "cnt.yml": "- name: d1\n  class: simulation_diode\n",
        "sessions/base.yml": "- name: base\n  class: session\n  config-objects: [m0]\n  setup-file: base_setup.py\n",
        "sessions/base_setup.py": "BASE = m0.name\n",
        "sessions/top.yml": "- name: top\n  class: session\n  include-sessions: [base]\n  config-objects: [d1]\n",
    })
    top = config.get("top")
    assert top.object_names() == ["m0", "d1"]
    env = top.setup({})
    assert env["BASE"] == "m0" and env["d1"] is config.get("d1")


def test_controller_and_its_axes_are_built_once(config):
    m0 = config.get("m0")
    controller = config.get("test_mockup")
    assert controller is m0.controller and config.get("m0") is m0
    assert config.get("gauss").axis is m0


@pytest.mark.parametrize("axes, expected", [
    ("    - steps_per_unit: 1\n", "a.yml:4: controller 'ctl': axes item 1 must be a mapping with a 'name'"),
    ("    - 1\n", "a.yml:3: controller 'ctl': axes item 1 must be a mapping with a 'name', got 1"),
])
def test_axes_items_must_be_named_mappings(tmp_path, axes, expected):
    text = "- class: mockup\n  name: ctl\n  axes:\n" + axes
    message = error_of(tmp_path, {"a.yml": text}, "ctl")
    assert message.startswith(expected), message


def test_more_messages_name_the_key(tmp_path):
    message = error_of(tmp_path, {"a.yml": "- name: x\n  class: 5\n"}, "x")
    assert message == "a.yml:2: object 'x': class must be a string, got 5"
    huge = AXIS.format(velocity=5).replace("steps_per_unit: 100", "steps_per_unit: " + "9" * 400)
    message = error_of(tmp_path, {"b.yml": huge}, "m0")
    assert message.startswith("b.yml:5: axis 'm0': steps_per_unit must be a finite number")
    message = error_of(tmp_path, {"c.yml": "- name: d\n  class: simulation_diode\n  seed: -1\n"}, "d")
    assert message == "c.yml:3: diode 'd': seed must be >= 0, got -1"
    message = error_of(tmp_path, {"d.yml": "- name: s\n  class: session\n  include-sessions: [s]\n"}, "s")
    assert message == "d.yml:3: session 's': include-sessions: a session cannot include itself"
    message = error_of(tmp_path, {"sub/__init__.yml": "- 1\n", "sub/x.yml": "- name: d\n  class: simulation_diode\n"})
    assert message == "sub/__init__.yml: must be a mapping of inherited keys, got [1]"

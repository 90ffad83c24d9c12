"""Errors a user can cause end in one line naming the culprit: names a plotting library would
interpret, a sample name holding a path, a view API key of another Redis type.

(A PONI path naming a file of another kind: tests/test_hostile_files.py.)
"""
from __future__ import annotations

import h5py
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bliss_lite.config import Config, ConfigError
from bliss_lite.config.settings import SettingsStore
from bliss_lite.view.export import main, render

MATHTEXT = ["$\\frac{a", "a_b$", "$$", "$\\alpha$", "50$ & <b>x<b>", "$\\undefinedcommand$", "x^2_{"]


@pytest.fixture(scope="module")
def saved_scan(tmp_path_factory, shared_redis):
    """A saved scan file whose counter can be renamed at will (a counter name comes from the file)."""
    from conftest import session_of_its_own

    with session_of_its_own(tmp_path_factory.mktemp("names"), shared_redis) as ns:
        scan = ns["ascan"](ns["m0"], 0, 1, 5, 0.001, ns["diode1"], save=True)
    return scan.filename, scan.entry


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(MATHTEXT) | st.text(alphabet="$\\_^{}ab", min_size=1, max_size=8))
@example(name="$$")  # both raised a ParseException naming no counter before
@example(name="$\\undefinedcommand$")
def test_counter_names_with_mathtext_are_drawn_literally(saved_scan, tmp_path, name):
    filename, entry = saved_scan
    copy = tmp_path / "copy.h5"
    copy.write_bytes(open(filename, "rb").read())
    with h5py.File(copy, "r+") as h5:
        measurement = h5[f"{entry}/measurement"]
        if name in measurement:
            return
        measurement.move("diode1", name)
    figure = render(copy, entry, [name])
    labels = [t.get_text() for ax in figure.axes for t in ax.get_legend().get_texts()] if figure.axes[0].get_legend() \
        else []
    assert name in labels + [figure.axes[0].get_ylabel().split(" (")[0]]
    assert main([str(copy), entry, "-o", str(tmp_path / "out.png"), "--counters", name, "--dpi", "30"]) == 0


def test_a_sample_name_with_a_path_is_a_configuration_error_naming_the_file(tmp_path):
    root = tmp_path / "config"
    root.mkdir()
    (root / "session.yml").write_text("- class: session\n  name: s\n  scan_saving:\n    sample: ../../etc/x\n")
    with pytest.raises(ConfigError) as error:
        Config(root, SettingsStore(tmp_path / "run")).get("s")
    message = str(error.value)
    assert message.startswith("session.yml:3: ") and "scan_saving.sample" in message and "'../../etc/x'" in message


PHASES = ["<img src=x onerror=alert(1)>", "$\\frac{1}{0}$", "a b\"><svg onload=alert(2)> & c"]


@pytest.fixture(scope="module")
def hostile_xrdct(tmp_path_factory, shared_redis):
    """A saved XRD-CT scan whose reconstruction phases (the hook's dict keys) have hostile names."""
    from conftest import session_of_its_own

    with session_of_its_own(tmp_path_factory.mktemp("phases"), shared_redis) as ns:
        phases = dict(zip(PHASES, ["CeO2", "LaB6", "CeO2"]))
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.5, 0.5, 4, [0.0], 0.02, n_omega=4, fast_axis="x",
                           hooks={"integration": {"npt": 50, "workers": 0}, "reconstruction": {"phases": phases}})
    return scan.filename, scan.entry


def test_hostile_phase_names_are_drawn_and_exported_literally(hostile_xrdct, tmp_path):
    """Each map panel is titled with its phase's name as written, one artist per phase, and the
    PNG and SVG export carry no element or handler from a name."""
    import xml.etree.ElementTree as ElementTree

    filename, entry = hostile_xrdct
    figure = render(filename, entry)
    titles = {ax.get_title(): ax for ax in figure.axes}
    for name in PHASES:
        title = next(t for t in titles if t.startswith(f"{name} (reconstructed"))
        text = titles[title].title
        assert text.get_text() == title and not text.get_parse_math()  # drawn as written, never as mathtext
        images = [a for a in titles[title].images if a.get_gid() == f"map:{name}"]
        assert len(images) == 1, [a.get_gid() for a in titles[title].images]
    assert main([filename, entry, "-o", str(tmp_path / "out.png"), "--dpi", "30"]) == 0
    assert main([filename, entry, "-o", str(tmp_path / "out.svg"), "--dpi", "30"]) == 0
    tree = ElementTree.parse(tmp_path / "out.svg")  # well formed: no name broke out of its attribute
    tags = {element.tag.rsplit("}", 1)[-1] for element in tree.iter()}
    assert not tags & {"img", "script", "foreignObject"}, tags
    assert [e.tag.rsplit("}", 1)[-1] for e in tree.iter()].count("svg") == 1  # the document's own
    handlers = [key for element in tree.iter() for key in element.attrib if key.lower().startswith("on")]
    assert handlers == []
    ids = {element.get("id") for element in tree.iter()}
    assert {f"map:{name}" for name in PHASES} <= ids

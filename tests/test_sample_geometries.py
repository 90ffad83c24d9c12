"""Sample geometries other than the demo's, chosen in the YAML as a user would (`phantom:`),
scanned end to end: simulated frames, the integration and reconstruction hooks, phase maps
against that geometry's exact truth. Bad keys are refused with file, line and key."""
from __future__ import annotations

import json
import shutil

import h5py
import pytest

from bliss_lite.config.errors import ConfigError
from bliss_lite.controllers.sample.phantom import make_phantom
from bliss_lite.processing.phase_maps import correlation, ground_truth
from tests.conftest import CONFIG_DIR

ROI = (848, 737, 96, 240)  # the demo's strip: from the beam centre outwards, q to ~50 nm^-1
SESSION = """\
- name: geometry
  class: session
  config-objects: [omega, x, z, xrdct_sample, pilatus, ring]
  scan_saving:
    base_path: /tmp/bliss_lite_data
"""


def user_config(tmp_path, *sample_lines):
    """The shipped configuration copied, with lines added to the xrdct_sample's YAML (after its
    `poni:` line) and a session of the sample, its stages and its detector."""
    root = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, root)
    detector = root / "xrdct" / "detector.yml"
    lines = detector.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("poni:")) + 1
    detector.write_text("\n".join(lines[:at] + [f"  {line}" for line in sample_lines] + lines[at:]) + "\n")
    (root / "sessions" / "geometry.yml").write_text(SESSION)
    return root, at + 1  # the first added line's number


@pytest.fixture
def session_of(tmp_path, run_dir, shared_redis, data_root, monkeypatch):
    """open(*sample_lines) -> the namespace of the geometry session; closed at the end."""
    from bliss_lite.shell.runner import open_session

    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    opened = []

    def open_(*sample_lines):
        root, _ = user_config(tmp_path, *sample_lines)
        session, ns = open_session("geometry", root)
        opened.append(session)
        ns["pilatus"].roi = ROI
        return ns

    yield open_
    for session in opened:
        session.close()


# (phantom, beam positions, angles, count time (the x sweep within its 20 mm/s), the r floor).
# Measured at these sizes with seed 3 (2026-12-03): grains 0.985 / 0.984 / 0.966 / 0.967 (matrix,
# Si, CeO2, LaB6; 0.989 / 0.990 / 0.983 / 0.943 at 20 x 30), packed 0.971 / 0.974 / 0.971
# (alumina, Si, CeO2; 0.977 / 0.985 / 0.981 at 16 x 24).
CASES = [("grains", 16, 24, 0.012, 0.95), ("packed", 12, 18, 0.008, 0.95)]


@pytest.mark.parametrize("kind, n_x, n_omega, count_time, floor", CASES, ids=[c[0] for c in CASES])
def test_a_geometry_chosen_in_the_yaml_is_scanned_and_mapped_like_its_truth(session_of, kind, n_x, n_omega, count_time,
                                                                            floor):
    ns = session_of(f"phantom: {kind}", "seed: 3")
    sample = ns["xrdct_sample"]
    phantom = make_phantom(kind)
    assert sample.phantom.kind == kind and sample.phantom.names == phantom.names
    radius = phantom.radius
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -radius, radius, n_x, [0.0], count_time, n_omega=n_omega,
                       fast_axis="x", hooks={"integration": {"workers": 0, "npt": 400}, "reconstruction": {}})
    assert scan.end_reason == "SUCCESS"
    recorded = scan.scan_info["sample"]
    assert recorded["phantom"]["kind"] == kind and recorded["phantom"]["radius"] == radius
    assert recorded["phases"] == {p.name: p.calibrant for p in phantom.phases}  # reduction's phases: this sample's
    result = scan.hook("reconstruction").result
    assert sorted(result["maps"]) == sorted(phantom.names)
    with h5py.File(scan.filename, "r", locking=False) as h5:
        entry = h5[scan.entry]
        assert json.loads(entry["scan_info"][()])["sample"]["phantom"]["kind"] == kind
        scores = {}
        for phase in phantom.names:
            image = entry[f"reconstruct/{phase}/map"][0]
            assert image.shape == (n_x, n_x)
            scores[phase] = correlation(image, ground_truth(phantom, phase, 0.0, n_x))
    print(kind, {p: round(float(r), 4) for p, r in scores.items()})
    assert min(scores.values()) >= floor, scores


def test_phantom_keys_are_checked_with_file_line_and_key(tmp_path, run_dir):
    from bliss_lite.config import Config
    from bliss_lite.config.settings import SettingsStore

    for lines, message in (
        (["phantom: grain"], r"phantom must be one of default, grains, packed, got 'grain'"),
        (["phantom: 3"], r"phantom must be a string, got 3"),
        (["phantom: packed", "phantom_radius: 0"], r"phantom_radius must be > 0, got 0"),
        (["phantom_size: 2"], r"unknown key 'phantom_size' \(did you mean 'phantom'\?\)"),
    ):
        root, line = user_config(tmp_path / str(len(list(tmp_path.iterdir()))), *lines)
        line += len(lines) - 1  # the last added line is the bad one
        config = Config(root, SettingsStore(run_dir))
        with pytest.raises(ConfigError, match=rf"detector.yml:{line}: sample 'xrdct_sample': {message}"):
            config.get("xrdct_sample")


def test_phantom_radius_scales_the_geometry_and_the_record(tmp_path, run_dir):
    from bliss_lite.config import Config
    from bliss_lite.config.settings import SettingsStore

    root, _ = user_config(tmp_path, "phantom: packed", "phantom_radius: 1.2")
    sample = Config(root, SettingsStore(run_dir)).get("xrdct_sample")
    packed = make_phantom("packed")
    assert sample.phantom.radius == 1.2 and "packed phantom" in sample.__info__()
    # twice the size: the same picture on the same grid, every chord twice as long
    for phase in packed.names:
        assert (sample.phantom.phase_map(phase, 0.0, 64) == packed.phase_map(phase, 0.0, 64)).all()
    assert float(sample.phantom.path_lengths(0.5, 30.0, 0.0)["alpha_Al2O3"]) == pytest.approx(
        2 * float(packed.path_lengths(0.25, 30.0, 0.0)["alpha_Al2O3"]))
    shapes = sample.description()["phantom"]["shapes"]
    assert [s["phase"] for s in shapes] == ["alpha_Al2O3", "Si", "Si", "CeO2"]
    assert shapes[0]["a"] == pytest.approx(0.6) and shapes[1]["density"] == 0.6 and shapes[0]["z_min"] is None
    json.dumps(sample.description(), allow_nan=False)  # plain JSON: stored in the file and in Redis


def test_the_shipped_sample_is_the_demo_phantom_and_a_pdfct_sample_refuses_phantom(tmp_path, run_dir):
    from bliss_lite.config import Config
    from bliss_lite.config.settings import SettingsStore

    shipped = Config(CONFIG_DIR, SettingsStore(run_dir)).get("xrdct_sample")
    assert shipped.phantom.kind == "default" and shipped.description()["phantom"]["radius"] == 1.0
    root = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, root)
    detector = root / "pdfct" / "detector.yml"
    lines = detector.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("poni:")) + 1
    detector.write_text("\n".join(lines[:at] + ["  phantom: grains"] + lines[at:]) + "\n")
    config = Config(root, SettingsStore(run_dir))
    name = next(n for n in config.names if config.get_node(n).get("class") == "pdfct_sample")
    with pytest.raises(ConfigError, match=rf"pdfct/detector.yml:{at + 1}: sample '{name}': a pdfct_sample has no "
                                          r"key 'phantom'"):
        config.get(name)

"""PDF of a saved scan: the `pdf` scan hook (after the reconstruction) and the `pdf_scan` job.

An XRD-CT entry with a `reconstruct` NXprocess: G(r) of every voxel, height by height
(pdf_ct.PdfCt), into `<sample>_scanNNNN/pdf.h5` (gr (nz, n, n, nr) float32, a height per
chunk; maps/<phase>, windows/<name> (nz, n, n)) and the entry's NXprocess `pdf`: NXdata `gr`
(z, y, x, r), one NXdata per phase map and per r window, the configuration (every parameter),
external links to pdf.h5. Memory: one height's slice and its G(r) at a time.

Any other entry with `integrate` (a static measurement, `ct`, `loopscan`, ...): the mean
pattern of its frames (or one frame, `frame: k`) -> S(Q), F(Q), G(r) in the NXprocess `pdf`.

Options (hook or job `pdf`): PdfSettings' (composition, qmin, qmax, rpoly, rmin, rmax, rstep,
lorch, bgscale), `background` (None | {"q", "intensity"} | {"filename", "entry"}: another
entry's mean pattern, refused if its geometry differs), `references`, `windows`,
`fit_range`, `backend`, `frame`. The composition and the references default to the scan's
recorded sample description (`scan_info["sample"]["pdf"]`). Everything is checked before
anything is computed.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.processing.hook_registry import ScanHook, register_hook, warn
from bliss_lite.processing.jobs import register
from bliss_lite.processing.pdf import PdfSettings, check_background, q_in_inverse_angstrom, reduce_pattern
from bliss_lite.processing.pdf_ct import PdfCt, default_windows, footprint

PDF_KEYS = set(PdfSettings.__dataclass_fields__)
OTHER_KEYS = {"background", "references", "windows", "fit_range", "backend", "frame"}
KEEP_GR_BYTES = 256 * 2 ** 20  # the hook's result holds G(r) of every voxel only below this (the file has it)
MAP_UNITS = {"maps": "a.u.", "windows": "A^-2"}  # a phase's amount (NNLS weight of its reference G(r)); mean G(r)
GEOMETRY_KEYS = ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")


def check_options(options, scan_info=None):
    """(PdfSettings, the rest) from the options and the scan's recorded sample; refuses
    unknown options and missing parameters, naming them."""
    options = dict(options or {})
    unknown = sorted(set(options) - PDF_KEYS - OTHER_KEYS)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(PDF_KEYS | OTHER_KEYS))}")
    recorded = ((scan_info or {}).get("sample") or {}).get("pdf") or {}
    settings = {k: v for k, v in options.items() if k in PDF_KEYS}
    if settings.get("composition") is None and recorded.get("composition"):
        settings["composition"] = recorded["composition"]
    rest = {k: v for k, v in options.items() if k in OTHER_KEYS}
    if rest.get("references") is None and recorded.get("phases"):
        rest["references"] = recorded["phases"]
    from bliss_lite.processing.gpu import checked_option

    rest["backend"] = checked_option(rest.get("backend", "cpu"), "pdf")
    return PdfSettings(**settings), rest


def _read_json(group, name):
    node = group.get(name)
    return None if node is None else json.loads(node[()])


def _geometry(h5, entry):
    """The entry's integration geometry (pyFAI config) from its `integrate` configuration."""
    config = _read_json(h5[entry].get("integrate", {}), "configuration") if "integrate" in h5[entry] else None
    return (config or {}).get("geometry"), (config or {}).get("unit")


def mean_pattern(path, entry, frame=None):
    """(Q (1/A), mean pattern, geometry) of an entry's integrated frames (or of one frame)."""
    with open_hdf5(path) as h5:
        if entry not in h5 or "integrate" not in h5[entry]:
            raise ValueError(f"{path}: entry {entry!r} has no integrated patterns (integrate NXprocess)")
        results = h5[entry]["integrate/results"]
        geometry, unit = _geometry(h5, entry)
        axis = next(k for k in results if k in ("q", "2th"))
        radial = results[axis][()]
        intensity = results["intensity"]
        if frame is not None:
            if not isinstance(frame, int) or not 0 <= frame < intensity.shape[0]:
                raise ValueError(f"frame: must be a frame number in 0..{intensity.shape[0] - 1}, got {frame!r}")
            pattern = intensity[frame].astype(float)
        else:
            pattern = np.zeros(intensity.shape[1])
            for start in range(0, intensity.shape[0], 4096):
                pattern += intensity[start:start + 4096].astype(float).sum(axis=0)
            pattern /= max(intensity.shape[0], 1)
    return q_in_inverse_angstrom(radial, unit), pattern, geometry


def resolve_background(background, q, geometry):
    """A background given as another entry: its mean pattern, refused if measured with
    another geometry; any background refused unless it is on the sample's Q axis `q` (1/A)."""
    if background is None:
        return None
    if not isinstance(background, dict) or not ({"q", "intensity"} <= set(background)
                                                or {"filename", "entry"} <= set(background)):
        raise ValueError(f"background: None, {{q, intensity}} or {{filename, entry}}, got {background!r}")
    if "filename" not in background:
        check_background(q, background["q"])
        if np.shape(background["intensity"]) != np.shape(q):
            raise ValueError(f"background: {np.size(background['intensity'])} intensities for {np.size(q)} Q points")
        return background
    bq, pattern, other = mean_pattern(background["filename"], background["entry"])
    if geometry and other:
        differs = [k for k in GEOMETRY_KEYS if not np.isclose(float(geometry.get(k, 0)), float(other.get(k, 0)),
                                                               rtol=1e-6, atol=1e-12)]
        if differs:
            raise ValueError(f"background: {background['filename']} entry {background['entry']} was measured with "
                             f"another geometry ({', '.join(differs)} differ)")
    return resolve_background({"q": bq, "intensity": pattern}, q, geometry)


@register("pdf_scan")
def pdf_scan(data):
    """The `pdf_scan` job: {"filename", "entry", "pdf": {options}} -> {"kind", "file", ...}."""
    path, entry = data["filename"], data["entry"]
    with open_hdf5(path) as h5:
        if entry not in h5:
            raise ValueError(f"{path}: no entry {entry!r}")
        info = _read_json(h5[entry], "scan_info") or {}
        tomography = "reconstruct" in h5[entry]
    settings, rest = check_options(data.get("pdf"), info)
    if tomography:
        return pdf_ct_entry(path, entry, settings, rest, info)
    return pdf_static_entry(path, entry, settings, rest)


def pdf_static_entry(path, entry, settings, rest):
    """S(Q), F(Q), G(r) of an entry's mean pattern (or one frame), written as NXprocess `pdf`."""
    q, pattern, geometry = mean_pattern(path, entry, rest.get("frame"))
    settings.check_range(q)
    background = resolve_background(rest.get("background"), q, geometry)
    bg = None if background is None else (background["q"], background["intensity"])
    reduced = reduce_pattern(q, pattern, settings, background=bg)
    config = {**settings.to_dict(), "frame": rest.get("frame"), "background": None if bg is None else "pattern"}
    with open_hdf5(path, "a", libver="latest") as h5:
        process = _process(h5[entry], config)
        for name, x, xu, y, yu in (("gr", "r", "A", "G", "A^-2"), ("fq", "Q", "A^-1", "F", "A^-1"),
                                   ("sq", "Q", "A^-1", "S", "")):
            group = process.create_group(name)
            group.attrs["NX_class"] = "NXdata"
            xs = reduced.r if x == "r" else reduced.q
            ys = {"gr": reduced.gr, "fq": reduced.fq, "sq": reduced.sq}[name]
            group.create_dataset(y, data=ys.astype(np.float64)).attrs["units"] = yu
            group.create_dataset(x, data=xs.astype(np.float64)).attrs["units"] = xu
            group.attrs["signal"], group.attrs["axes"] = y, [x]
        process.attrs["default"] = "gr"
    return {"kind": "static", "filename": path, "entry": entry, "r": reduced.r.tolist(), "gr": reduced.gr.tolist()}


def _process(group, configuration):
    if "pdf" in group:
        del group["pdf"]
    process = group.create_group("pdf")
    process.attrs["NX_class"] = "NXprocess"
    process["program"] = "bliss_lite"
    process["configuration"] = json.dumps(configuration, sort_keys=True, default=str)
    process["configuration"].attrs["type"] = "application/json"
    return process


def _grid(info):
    """(x_mm, omega_deg) at the centres of the scan's steps (as the xrdct scan plans them)."""
    x = info["xrdct"]
    dx, domega = (x["x_stop"] - x["x_start"]) / x["n_x"], x["omega_range"] / x["n_omega"]
    return x["x_start"] + (np.arange(x["n_x"]) + 0.5) * dx, (np.arange(x["n_omega"]) + 0.5) * domega


def pdf_ct_entry(path, entry, settings, rest, info, keep=False):
    """G(r) of every voxel of an XRD-CT entry's reconstruction, height by height, into pdf.h5
    and the NXprocess `pdf`. `keep`: also return the maps and, below KEEP_GR_BYTES, G(r)."""
    from bliss_lite.data.scan_files import reduction_file
    from bliss_lite.processing.gpu import resolve_backend

    backend = resolve_backend(rest["backend"], "pdf")
    xp = np
    if backend == "gpu":
        import cupy as xp  # noqa: F811 - the GPU's arrays
    references = rest.get("references")
    windows = rest.get("windows") or default_windows(references)
    engine = PdfCt(settings, references, windows, rest.get("fit_range", (1.0, min(20.0, settings.rmax))),
                   xp=xp)
    with open_hdf5(path) as h5:
        process = h5[entry]["reconstruct"]
        volume = process["volume"]
        axis = next(k for k in volume if k in ("q", "2th"))
        unit = "q_A^-1" if volume[axis].attrs.get("units") == "A^-1" else "q_nm^-1"
        q = q_in_inverse_angstrom(volume[axis][()], unit)
        settings.check_range(q)  # before anything is computed
        geometry = _geometry(h5, entry)[0]
        z, y, x = volume["z"][()], volume["y"][()], volume["x"][()]
        centre = float((_read_json(process, "configuration") or {}).get("centre_mm") or 0.0)
        nz, n = volume["data"].shape[0], volume["data"].shape[1]
    keep_gr = keep and nz * n * n * settings.r.size * 4 <= KEEP_GR_BYTES
    engine.background = resolve_background(rest.get("background"), q, geometry)
    x_mm, omega = _grid(info)
    foot = footprint(x_mm, omega, centre, n)
    output = reduction_file(path, entry, "pdf")
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_suffix(".h5.part")
    kept = {"gr": [], "maps": {}, "windows": {}}
    with open_hdf5(part, "w") as out, open_hdf5(path) as h5:
        data = h5[entry]["reconstruct/volume/data"]
        gr = out.create_dataset("gr", (nz, n, n, settings.r.size), np.float32, chunks=(1, n, n, settings.r.size))
        gr.attrs["units"] = "A^-2"
        for h in range(nz):
            image = data[h]
            if not np.any(image):
                continue  # a height not measured
            if engine.transform is None:
                engine.prepare(q, image, foot)
            g, maps, wins = engine.slice(image, foot)
            gr[h] = _host(g)
            for group, values in (("maps", maps), ("windows", wins)):
                for name, m in values.items():
                    if f"{group}/{name}" not in out:
                        out.create_dataset(f"{group}/{name}", (nz, n, n), np.float32)
                        out[f"{group}/{name}"].attrs["units"] = MAP_UNITS[group]
                    out[f"{group}/{name}"][h] = _host(m)
                    if keep:
                        kept[group].setdefault(name, np.zeros((nz, n, n), np.float32))[h] = _host(m)
            if keep_gr:
                kept["gr"].append(_host(g))
        out["r"] = settings.r
        out["r"].attrs["units"] = "A"
        if engine.transform is None:
            raise ValueError("pdf: the reconstruction holds no measured height")
        names = {"maps": list(out.get("maps", {})), "windows": list(out.get("windows", {}))}
    part.replace(output)
    _write_ct_process(path, entry, output, engine, names, (z, y, x))
    result = {"kind": "tomography", "filename": path, "entry": entry, "file": str(output),
              "maps": names["maps"], "windows": names["windows"], "r": settings.r.tolist()}
    if keep:
        result.update(gr_volume=np.stack(kept["gr"]) if kept["gr"] else None, map_values=kept["maps"],
                      window_values=kept["windows"], air=engine.air)
    return result


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _write_ct_process(path, entry, output, engine, names, axes):
    from pathlib import Path

    relative = str(Path(output).relative_to(Path(path).parent))
    with open_hdf5(path, "a", libver="latest") as h5:
        process = _process(h5[entry], engine.configuration())
        gr = process.create_group("gr")
        gr.attrs["NX_class"] = "NXdata"
        gr["data"] = h5py.ExternalLink(relative, "/gr")
        for key, values in zip(("z", "y", "x"), axes):
            gr[key] = np.asarray(values, np.float64)
            gr[key].attrs["units"] = "mm"
        gr["r"] = engine.r
        gr["r"].attrs["units"] = "A"
        gr.attrs["signal"], gr.attrs["axes"] = "data", ["z", "y", "x", "r"]
        for group, units in MAP_UNITS.items():
            for name in names[group]:
                node = process.create_group(name if group == "maps" else f"window_{name}")
                node.attrs["NX_class"] = "NXdata"
                node["map"] = h5py.ExternalLink(relative, f"/{group}/{name}")
                for key in ("z", "y", "x"):
                    node[key] = h5py.SoftLink(f"/{entry}/pdf/gr/{key}")
                node.attrs["signal"], node.attrs["axes"] = "map", ["z", "y", "x"]
                node.attrs["units"] = units
        process.attrs["default"] = names["maps"][0] if names["maps"] else "gr"


class PdfHook(ScanHook):
    """After the reconstruction hook has written its NXprocess: the PDF of every voxel."""

    name = "pdf"

    def __init__(self, options, scan_info=None):
        self.options = dict(options)
        self.settings, self.rest = check_options(self.options, scan_info)
        self.result = None

    def check_with(self, hooks):
        """Before the scan starts (make_hooks): the Q range against the integration's radial
        axis, and the background (another entry's mean pattern: read once, now) on that Q axis
        and of that geometry. Refused here, the scan does not start."""
        integration = hooks.get("integration")
        if integration is None or hooks.get("reconstruction") is None:
            raise ValueError("the pdf hook needs the integration and reconstruction hooks")
        radial = integration.radial if integration.radial is not None else integration.integrator().radial
        integration.radial = radial
        q = q_in_inverse_angstrom(radial, integration.settings.unit)
        self.settings.check_range(q)
        self.rest["background"] = resolve_background(self.rest.get("background"), q, integration.settings.geometry)

    def scan_started(self, scan):
        if scan.hook("reconstruction") is None:
            raise ValueError("the pdf hook needs the reconstruction hook")
        background = self.rest.get("background")  # checked and resolved by check_with
        self.settings, self.rest = check_options(self.options, scan.scan_info)
        self.rest["background"] = background
        self.check_with({"integration": scan.hook("integration"), "reconstruction": scan.hook("reconstruction")})

    def scan_finished(self, scan):
        if not scan.filename or scan.hook("reconstruction").result is None:
            warn("pdf: no saved reconstruction, no PDF")
            return
        import gevent

        try:
            self.result = gevent.get_hub().threadpool.apply(
                pdf_ct_entry, (scan.filename, scan.entry, self.settings, self.rest, scan.scan_info, True))
        except (ValueError, OSError, KeyError) as exc:
            warn(f"pdf: {exc}")


@register_hook("pdf")
def make_pdf_hook(options, context):
    return PdfHook(options, context.get("scan_info"))

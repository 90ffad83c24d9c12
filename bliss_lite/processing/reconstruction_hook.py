"""The `reconstruction` hook: sinograms fill up from the integrated patterns, phase maps appear
while the scan runs, and the final volume and maps go to the scan's file.

Patterns come from the integration hook (its listener call, on the scan's greenlet); the
frame's read-backs (omega, x, z) and monitors (i0, it) come from the scan's own buffers, so
snake order and any frame order are sorted by position (sinogram.SinogramBuilder). Live:
with x sweeping, each finished line is one projection and is back-projected at once
(IncrementalBackprojector); with omega sweeping a projection only completes at the end of a
slice, so the partial sinogram is reconstructed every `live_period_s` instead. Heavy numpy
work runs in the hub's threadpool so acquisition never waits for it. Live phase maps go to
Redis (`<key>:processing:reconstruction`, docs/redis-protocol.md) for viewers.

`backend="gpu"` (or "auto" where there is one): the sinograms are built on the GPU (patterns
cross the bus once, as CuPy arrays already when the integration ran here on the GPU), FBP and
SIRT read them there, and only the reconstructed slices come back for the maps and the file.
Sinograms larger than GPU_SHARE of the GPU's free memory stay in host memory and cross the
bus slice by slice (`gpu/fbp.py` overlaps that with the work).
"""
from __future__ import annotations

import json
import time

import numpy as np

from bliss_lite.processing.gpu import checked_option, take_rows, to_host
from bliss_lite.processing.hook_registry import ScanHook, register_hook, warn
from bliss_lite.protocols import Backend

LIVE_MAXLEN = 500
METHODS = ("fbp", "sirt")
NORMALISATIONS = ("i0", "i0+transmission", "none")
GPU_SHARE = 0.5  # of the GPU's free memory the sinograms may take; the reconstruction needs room too


def live_key(scan_key):
    return f"{scan_key}:processing:reconstruction"


class ReconstructionHook(ScanHook):
    name = "reconstruction"

    def __init__(self, phases, method="fbp", iterations=50, window="ramp", centre="auto",
                 normalise="i0+transmission", roi_width=0.6, live_period_s=1.0, n=None, peak_fwhm=None,
                 backend=Backend.CPU):
        self.phases = dict(phases)  # {phase: pyFAI calibrant name, or None for amorphous}
        self.method, self.iterations, self.window = method, iterations, window
        self.centre_option = centre
        self.normalisation = normalise
        self.roi_width, self.live_period_s, self.n = roi_width, live_period_s, n
        self.peak_fwhm = peak_fwhm  # the instrument's peak width (q units): fits overlapping peaks
        self.backend = backend  # as asked; `resolved` is what runs ("cpu" or "gpu")
        self.resolved = None
        self.reference_i0 = None  # one I0 scale for the whole scan, whatever the batches
        self.builder = self.info = self.rois = None
        self.centre = None
        self.live = {}  # z index -> IncrementalBackprojector (x sweeping)
        self.live_maps = {}  # z index -> {phase: map}, the latest
        self.live_updates = 0
        self.result = None  # after the scan: {"volume", "maps", "centre", "x_mm", "z", "radial", ...}
        self._pending = []
        self._dirty = False
        self._scan = self._integration = self._greenlet = None

    # -- the scan's calls ------------------------------------------------------------------------
    def scan_started(self, scan):
        import gevent

        self._integration = scan.hook("integration")
        if self._integration is None:
            raise ValueError("the reconstruction hook needs the integration hook")
        info = scan.scan_info.get("xrdct")
        if not info:
            raise ValueError("the reconstruction hook needs an xrdct scan")
        self._scan = scan
        self.start(info, self._integration.npt)
        self._integration.add_listener(self._on_patterns)
        self._greenlet = gevent.spawn(self._live_forever)

    def start(self, info, npt):
        """Empty sinograms for the scan's grid (scan_info["xrdct"]), on the GPU where the
        backend runs there and they fit."""
        from bliss_lite.processing.gpu import resolve_backend
        from bliss_lite.processing.sinogram import SinogramBuilder

        self.info = info
        self.resolved = resolve_backend(self.backend, "reconstruction")
        on_gpu = self.resolved == Backend.GPU
        if on_gpu:
            import cupy

            size, free = SinogramBuilder.nbytes(info, npt), cupy.cuda.Device().mem_info[0]
            if size > GPU_SHARE * free:
                warn(f"reconstruction: the sinograms ({size / 1e9:.1f} GB) would take more than {GPU_SHARE:.0%} of "
                     f"the GPU's free memory ({free / 1e9:.1f} GB): they stay in host memory and cross the bus "
                     "slice by slice")
                on_gpu = False
        self.builder = SinogramBuilder(info, npt, device=on_gpu)

    def scan_finished(self, scan):
        if self._greenlet is not None:
            self._greenlet.kill()
        self._take_pending()
        sinograms = self.builder.sinograms
        if not sinograms.filled.any():
            warn(f"reconstruction: scan {scan.number}: no integrated frame, nothing to reconstruct")
            return
        self.result = self.reconstruct_all(sinograms, self._radial())
        maps = self.result["maps"]
        self._publish_live(scan, {iz: {p: m[iz] for p, m in maps.items()} for iz in range(len(sinograms.z))},
                           complete=True)
        if scan.filename:
            self.write(scan.filename, scan.entry, self._integration.settings.unit)

    def reconstruct_all(self, sinograms, radial):
        """Every slice: centre of rotation, volume (nz, n, n, nq), phase maps {phase: (nz, n, n)}."""
        self.centre = self._final_centre(sinograms)
        volume = np.stack([to_host(self._reconstruct(sinograms, iz)) for iz in range(len(sinograms.z))])
        return {"volume": volume, "maps": self._maps(volume, radial), "centre": self.centre,
                "x_mm": sinograms.x_mm, "z": np.asarray(sinograms.z), "radial": radial, "rois": self.rois,
                "filled": float(sinograms.filled.mean())}

    def write(self, filename, entry, unit):
        from bliss_lite.processing.nexus_output import write_reconstruction

        r = self.result
        axis = self._image_axis(r["x_mm"], r["volume"].shape[1])
        write_reconstruction(filename, entry, r["volume"], axis, axis, r["z"], r["radial"], unit, r["maps"],
                             self.configuration())

    def configuration(self):
        return {"method": self.method, "iterations": self.iterations, "window": self.window,
                "peak_fwhm": self.peak_fwhm, "reference_i0": self.reference_i0,
                "centre_mm": self.centre, "centre_option": self.centre_option, "normalise": self.normalisation,
                "phases": self.phases, "rois": _plain_rois(self.rois), "roi_width": self.roi_width,
                "backend": self.resolved, "sinograms_on_gpu": self.builder is not None and self.builder.xp is not np}

    # -- live ------------------------------------------------------------------------------------
    def _on_patterns(self, indices, patterns):
        """Patterns (NumPy, or CuPy from a GPU integration) are kept where the sinograms are."""
        patterns = to_host(patterns) if self.builder.xp is np else self.builder.xp.asarray(patterns)
        self._pending.append((np.asarray(indices), patterns))
        self._dirty = True

    def _take_pending(self):
        """Patterns whose frames' read-backs are in the scan's buffers go into the sinograms."""
        if not self._pending:
            return
        names = ["omega", "x", "z", "i0", "it"]
        data = self._scan.data.get_data(names)
        known = min(len(data[n]) for n in names)
        waiting = []
        for indices, patterns in self._pending:
            ready = indices < known
            if (~ready).any():
                waiting.append((indices[~ready], take_rows(patterns, ~ready)))
            if ready.any():
                idx = indices[ready]
                self._add(idx, take_rows(patterns, ready), *(data[n][idx] for n in names))
        self._pending = waiting

    def _add(self, indices, patterns, omega, x, z, i0, it):
        from bliss_lite.processing.sinogram import normalise

        if self.normalisation != "none":
            if self.reference_i0 is None:
                self.reference_i0 = float(np.mean(i0))
            patterns = normalise(patterns, i0, it if self.normalisation == "i0+transmission" else None,
                                 reference=self.reference_i0)
        self.builder.add(indices, patterns, omega, x, z)

    def _live_forever(self):
        import gevent

        while True:
            gevent.sleep(self.live_period_s)
            if self._dirty:
                self._dirty = False
                try:
                    self._live_update()
                except Exception as exc:  # noqa: BLE001 - live view only: the final result is redone
                    warn(f"reconstruction: live update failed: {exc}")

    def _live_update(self):
        import gevent

        self._take_pending()
        sinograms = self.builder.sinograms
        radial = self._radial()
        if radial is None:
            return
        centre = self._live_centre()
        maps = {}
        for iz in range(len(sinograms.z)):
            if not sinograms.filled[iz].any():
                continue
            if self.info.get("fast_axis") == "x":
                image = gevent.get_hub().threadpool.apply(self._incremental, (sinograms, iz, centre))
            else:
                image = gevent.get_hub().threadpool.apply(self._partial_fbp, (sinograms, iz, centre))
            if image is not None:
                maps[iz] = {p: m[0] for p, m in self._maps(image[np.newaxis], radial).items()}
        if maps:
            self.live_maps.update(maps)
            self.live_updates += 1
            self._publish_live(self._scan, maps, complete=False)

    def _incremental(self, sinograms, iz, centre):
        from bliss_lite.processing.fbp import IncrementalBackprojector

        if iz not in self.live:
            self.live[iz] = IncrementalBackprojector(sinograms.omega_deg, sinograms.x_mm, sinograms.data.shape[-1],
                                                     centre, n=self.n, window=self.window)
        projector = self.live[iz]
        for iw in np.flatnonzero(sinograms.filled[iz].all(axis=1)):
            if iw not in projector.added:  # each finished projection once (the CPU's incremental path)
                projector.add(int(iw), to_host(sinograms.data[iz, iw]))
        return projector.image() if projector.count else None

    def _partial_fbp(self, sinograms, iz, centre):
        from bliss_lite.processing.fbp import fbp

        return to_host(fbp(sinograms.data[iz], sinograms.x_mm, sinograms.omega_deg, centre, n=self.n,
                           window=self.window, backend=self.resolved))

    def _publish_live(self, scan, maps, complete):
        client = self._integration.client if self._integration is not None else None
        if client is None or scan.key is None:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for iz, by_phase in maps.items():
                for phase, image in by_phase.items():
                    image = np.ascontiguousarray(image, dtype="<f4")
                    pipe.xadd(live_key(scan.key), {"z_index": iz, "phase": phase, "shape": json.dumps(image.shape),
                                                   "data": image.tobytes(), "complete": int(complete),
                                                   "time": repr(time.time())},
                              maxlen=LIVE_MAXLEN, approximate=True)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - viewers miss an update; the file has the result
            warn(f"reconstruction: cannot publish live maps ({exc})")

    # -- the pieces --------------------------------------------------------------------------------
    def _radial(self):
        radial = self._integration.radial
        if radial is None:
            radial = self._integration.integrator().radial
            self._integration.radial = radial
        return np.asarray(radial)

    def _live_centre(self):
        return 0.0 if self.centre_option == "auto" else float(self.centre_option)

    def _final_centre(self, sinograms):
        if self.centre_option != "auto":
            return float(self.centre_option)
        from bliss_lite.processing.sinogram import estimate_centre

        complete = [iz for iz in range(len(sinograms.z)) if sinograms.filled[iz].all()]
        if not complete:
            warn("reconstruction: no complete slice to estimate the centre of rotation from; using 0")
            return 0.0
        return float(np.median([estimate_centre(sinograms.data[iz], sinograms.x_mm, sinograms.omega_deg)
                                for iz in complete]))

    def _reconstruct(self, sinograms, iz):
        from bliss_lite.processing.fbp import fbp

        sino, backend = sinograms.data[iz], self.resolved  # NumPy or CuPy: the image is the same kind
        start = fbp(sino, sinograms.x_mm, sinograms.omega_deg, self.centre, n=self.n, window=self.window,
                    backend=backend)
        if self.method == "sirt":
            from bliss_lite.processing.sirt import sirt

            return sirt(sino, sinograms.x_mm, sinograms.omega_deg, self.centre, iterations=self.iterations,
                        n=self.n, x0=start.clip(0), backend=backend)
        return start

    def _image_axis(self, x_mm, n):
        from bliss_lite.processing.tomo_grid import image_axis

        return image_axis(x_mm, self.centre or 0.0, n)

    def _maps(self, volume, radial):
        """{phase: (nz, n, n)} from volume (nz, n, n, nq)."""
        from bliss_lite.processing.phase_maps import phase_maps, phase_rois

        if self.rois is None:
            step = float(np.median(np.diff(radial)))
            width = max(self.roi_width, 4.5 * step)  # a ROI needs a few bins, whatever the binning
            self.rois = phase_rois(self.phases, float(radial.min()), float(radial.max()), width,
                                   peak_fwhm=self.peak_fwhm)
        per_slice = [phase_maps(volume[iz], radial, self.rois) for iz in range(len(volume))]
        return {phase: np.stack([m[phase] for m in per_slice]) for phase in self.rois}


def phases_of_sample(scan_info, options):
    """The phases the scan's recorded sample description names (scan_info["sample"]), or None;
    its peak width goes into `options` unless given (a simulated sample knows it)."""
    sample = (scan_info or {}).get("sample") or {}
    phases = sample.get("phases")
    if not phases:
        return None
    if "peak_fwhm" not in options and sample.get("peak_fwhm") is not None:
        options["peak_fwhm"] = sample["peak_fwhm"]
    return dict(phases)


def _plain_rois(rois):
    """ROIs as JSON-able values (for the NXprocess configuration)."""
    if rois is None:
        return None
    from dataclasses import asdict, is_dataclass

    return {p: (asdict(r) if is_dataclass(r) else r) for p, r in rois.items()}


@register_hook("reconstruction")
def make_reconstruction_hook(options, context):
    options = dict(options)
    known = {"phases", "method", "iterations", "window", "centre", "normalise", "roi_width", "live_period_s", "n",
             "peak_fwhm", "backend"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    phases = options.pop("phases", None)
    if phases is None:
        phases = phases_of_sample(context.get("scan_info"), options)
        if phases is None:
            raise ValueError("give phases={name: calibrant} (the scan recorded no sample with phases to take them from)")
    if not isinstance(phases, dict) or not phases:
        raise ValueError(f"phases must be a mapping of phase name to pyFAI calibrant (or None), got {phases!r}")
    method = options.get("method", "fbp")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    normalisation = options.get("normalise", "i0+transmission")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
    iterations = options.get("iterations", 50)
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    centre = options.get("centre", "auto")
    if centre != "auto" and not isinstance(centre, (int, float)):
        raise ValueError(f"centre must be 'auto' or a position in mm, got {centre!r}")
    checked_option(options.get("backend", Backend.CPU), "reconstruction")
    return ReconstructionHook(phases, **options)

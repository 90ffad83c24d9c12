"""The `reconstruction` hook: sinograms fill up from the integrated patterns, phase maps appear
while the scan runs, and each height is reconstructed and written as soon as it is complete.

Patterns come from the integration hook (its listener call, on the scan's greenlet); the
frame's read-backs (omega, x, z) and monitors (i0, it) come from the scan's own buffers, so
snake order and any frame order are sorted by position (sinogram.SinogramBuilder).

Slice by slice: z is the scan's slowest axis, so the builder holds the sinograms of at most
MAX_HEIGHTS heights (allocated when a height's first frame arrives). A height whose sinogram
is complete is reconstructed at once (FBP, or SIRT, in the hub's threadpool), its volume slice
(n, n, nq) and phase maps written to the scan's `reconstructed.h5` (reduction_files.VolumeStore),
its final maps published, and its sinogram freed. A frame of a third height finishes the
oldest one as it is; should frames of a finished height still come (late, or that height was
reconstructed before the centre of rotation was known), it is redone at the end from the
patterns on disk. At the end the entry's NXprocess `reconstruct` refers to the file.
The phase maps of every height stay in memory for `result` only while they are small
(KEEP_MAPS_BYTES); above that the slices file holds them and `result["maps"]` reads it
(reduction_files.StoredArray), and memory holds only the maps of the heights in flight. An
unsaved scan has no slices file: above KEEP_MAPS_BYTES its maps are arrays mapped on unlinked
scratch files (reduction_files.scratch_arrays), in the page cache rather than the process.

The centre of rotation (`centre="auto"`) is estimated from the first complete height with
signal and kept for every height (stored with the result). Live: with x sweeping, each
finished line of a held height is one projection and is back-projected at once
(IncrementalBackprojector); with omega sweeping a projection only completes at the end of a
height, so the partial sinogram is reconstructed every `live_period_s` instead (or less often:
live updates take at most LIVE_SHARE of the time, `live_wait`). Live phase maps
go to Redis (`<key>:processing:reconstruction`, docs/redis-protocol.md) for viewers.

`backend="gpu"` (or "auto" where there is one): the held sinograms are built on the GPU
(patterns cross the bus once, as CuPy arrays already when the integration ran here on the GPU),
FBP and SIRT read them there, and only the reconstructed slices come back for the maps and the
file. Held sinograms larger than GPU_SHARE of the GPU's free memory stay in host memory and
cross the bus slice by slice (`gpu/fbp.py` overlaps that with the work).

`reconstruct_scan` (scan_plugins.py) runs the same hook offline on a saved entry's patterns.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections import deque

import numpy as np

from bliss_lite.processing.gpu import checked_option, take_rows, to_host
from bliss_lite.processing.hook_registry import ScanHook, register_hook, warn
from bliss_lite.protocols import Backend

LIVE_MAXLEN = 500
LIVE_SHARE = 0.25  # of the time, at most, spent on live updates (a core's worth: FBP is threaded)


def live_wait(period_s, took_s):
    """Seconds to the next live update: `period_s`, or longer when an update takes more than
    LIVE_SHARE of the time (a partial FBP of a seed-size height takes seconds): the live view
    must not starve the acquisition and the integration of the scan it shows."""
    return max(period_s, took_s * (1 - LIVE_SHARE) / LIVE_SHARE)
METHODS = ("fbp", "sirt")
NORMALISATIONS = ("i0", "i0+transmission", "none")
GPU_SHARE = 0.5  # of the GPU's free memory the sinograms may take; the reconstruction needs room too
MAX_HEIGHTS = 2  # heights whose sinograms are held at once
# The result holds every height's maps (nz x n x n x 4 bytes a map) in memory only below this:
# the seed scan's 400 heights of 400 x 400 (7 maps) would be 1.8 GB, the 1000^3 target's 28 GB,
# growing as heights complete. Above it (a saved scan: the slices file has every height's maps)
# only the heights in flight hold maps, and result["maps"] reads them from the file.
KEEP_MAPS_BYTES = 256 * 2 ** 20
KEEP_DONE_HEIGHTS = MAX_HEIGHTS  # completed heights whose final maps stay in `live_maps` (maps not kept whole)
READBACKS = ("omega", "x", "z", "i0", "it")


def live_key(scan_key):
    return f"{scan_key}:processing:reconstruction"


class ReconstructionHook(ScanHook):
    name = "reconstruction"

    def __init__(self, phases, method="fbp", iterations=50, window="ramp", centre="auto",
                 normalise="i0+transmission", roi_width=0.6, live_period_s=1.0, n=None, peak_fwhm=None,
                 backend=Backend.CPU, reference_i0=None, maps="decomposition", profile=None, background="auto",
                 standards=None):
        from bliss_lite.processing.phase_mapper import PhaseMapper

        self.phases = dict(phases)  # {phase: pyFAI calibrant name, None (amorphous), or a reference spec}
        # how slices become maps (decomposition or ROIs); built at the first height, from the options and the data
        self.mapper = PhaseMapper(self.phases, maps, profile, peak_fwhm, background, standards, roi_width)
        self.method, self.iterations, self.window = method, iterations, window
        self.centre_option = centre
        self.normalisation = normalise
        self.roi_width, self.live_period_s, self.n = roi_width, live_period_s, n
        self.peak_fwhm = peak_fwhm  # the instrument's peak width (q units): fits overlapping peaks
        self.backend = backend  # as asked; `resolved` is what runs ("cpu" or "gpu")
        self.resolved = None
        self.reference_i0 = None if reference_i0 is None else float(reference_i0)  # one I0 scale for the scan
        self.builder = self.info = self.rois = None
        self.centre = None  # mm, once known (the option, or estimated from the first complete height)
        self.live = {}  # z index -> IncrementalBackprojector (x sweeping), while the height is held
        self.live_maps = {}  # z index -> {phase: map}, the latest (bounded when `maps` is None: trim_live)
        self.live_updates = 0
        # {phase: (nz, n, n)} float32, filled height by height (zeros until then); None when
        # the maps are larger than KEEP_MAPS_BYTES and the slices file holds them instead
        self.maps = None
        self.peak_map_heights = 0  # the most heights whose maps were held at once
        self._done = deque(maxlen=KEEP_DONE_HEIGHTS)  # the latest completed heights (maps not kept whole)
        self.store = None  # the VolumeStore the slices are written to (saved scans, offline runs)
        self.finished = {}  # z index -> the centre it was reconstructed with
        self.late = set()  # finished heights that frames still came for: redone from the file at the end
        self.result = None  # after the scan: {"maps", "centre", "x_mm", "z", "radial", "rois", "filled", ...}
        self._filled = {}  # z index -> grid points measured when it was reconstructed
        self._radial_values = None
        self.summed = None  # the summed pattern the phase mapper was made from (a Dask task makes the same)
        self._pending = []
        self._dirty = False
        self._scan = self._integration = self._greenlet = self._stop = None

    # -- the scan's calls ------------------------------------------------------------------------

    def estimate(self, frames, scan_info, earlier=None):
        """What it writes and holds for this scan (run=False): the volume and the phase maps on
        disk; in memory MAX_HEIGHTS heights of sinograms, one height being reconstructed (its
        slice and filtered sinogram), the live back-projection of an x-sweeping scan, the maps
        (every height's below KEEP_MAPS_BYTES, else those of the heights in flight)."""
        xrdct = (scan_info or {}).get("xrdct") or {}
        npt = int(((earlier or {}).get("integration") or {}).get("npt") or 0)
        if not xrdct or not npt:
            return {"bytes": 0, "peak_memory_bytes": 0, "note": "no xrdct geometry or no integration"}
        n_x, n_omega, n_z = int(xrdct["n_x"]), int(xrdct["n_omega"]), len(xrdct["z_positions"])
        n = int(self.n or n_x)
        height = n_omega * n_x * npt * 4  # one height's sinograms, float32
        image = n * n * npt * 4  # one reconstructed slice of every q bin
        one_map = n * n * 4 * len(self.mapper.names)  # one height's maps (the phases, + residual)
        maps = n_z * one_map
        held = maps if maps <= KEEP_MAPS_BYTES else min(n_z, MAX_HEIGHTS + KEEP_DONE_HEIGHTS) * one_map
        live = 2 * image if xrdct.get("fast_axis") == "x" else 0
        peak = MAX_HEIGHTS * height + image + 2 * height + live + held  # filtered: zero-padded x 2
        return {"bytes": n_z * image + maps, "peak_memory_bytes": peak, "volume_bytes": n_z * image,
                "maps_bytes": maps, "maps_held_bytes": held, "sinogram_height_bytes": height}
    def scan_started(self, scan):
        import gevent
        from gevent.event import Event

        self._integration = scan.hook("integration")
        if self._integration is None:
            raise ValueError("the reconstruction hook needs the integration hook")
        info = scan.scan_info.get("xrdct")
        if not info:
            raise ValueError("the reconstruction hook needs an xrdct scan")
        self._scan = scan
        output = None
        if scan.filename:
            from bliss_lite.data.scan_files import reduction_file

            output = reduction_file(scan.filename, scan.entry, "reconstructed")  # "3.2": its own folder
        self.start(info, self._integration.npt, output)
        if info is not None and scan.scan_info.get("continues"):  # a resumed scan: one dataset with its entries
            from bliss_lite.processing.continuation import preload

            preload(self, scan)
        self._integration.add_listener(self._on_patterns)
        self._stop = Event()
        self._greenlet = gevent.spawn(self._live_forever)

    def start(self, info, npt, output=None, radial=None, staging=False):
        """Ready to take the scan's patterns (scan_info["xrdct"]): the sinogram builder (on the
        GPU where the backend runs there and MAX_HEIGHTS heights fit), the maps, and the file
        the slices go to (`output`, None for none; `staging`: built beside it and renamed over
        it at the end, as a reprocessing does). `radial`: the q axis, else the integration hook's."""
        from bliss_lite.processing.gpu import resolve_backend
        from bliss_lite.processing.reduction_files import VolumeStore, scratch_arrays
        from bliss_lite.processing.sinogram import SinogramBuilder

        self.info = info
        self.resolved = resolve_backend(self.backend, "reconstruction")
        on_gpu = self.resolved == Backend.GPU
        if on_gpu:
            import cupy

            size, free = MAX_HEIGHTS * SinogramBuilder.height_nbytes(info, npt), cupy.cuda.Device().mem_info[0]
            if size > GPU_SHARE * free:
                warn(f"reconstruction: the sinograms of {MAX_HEIGHTS} heights ({size / 1e9:.1f} GB) would take more "
                     f"than {GPU_SHARE:.0%} of the GPU's free memory ({free / 1e9:.1f} GB): they stay in host memory "
                     "and cross the bus slice by slice")
                on_gpu = False
        self.builder = SinogramBuilder(info, npt, device=on_gpu, max_heights=MAX_HEIGHTS)
        if self._scan is not None:
            self.builder.reserve()  # a live scan: its sinograms' memory taken at the start (flat after)
        nz, n = self.builder.grid.z.size, self.pixels
        self.store = VolumeStore(output, nz, n, npt, self.mapper.names, staging) if output is not None else None
        size = nz * n * n * 4 * len(self.mapper.names)
        whole = self.store is None or size <= KEEP_MAPS_BYTES
        # phases (+ residual) of every height; else only those in flight (live_maps), the file has the rest
        self.maps = {name: np.zeros((nz, n, n), np.float32) for name in self.mapper.names} if whole else None
        if whole and size > KEEP_MAPS_BYTES:  # an unsaved scan: no slices file to read them back from
            self.maps = scratch_arrays(self.mapper.names, (nz, n, n)) or self.maps
            if isinstance(next(iter(self.maps.values())), np.memmap):
                warn(f"reconstruction: an unsaved scan's maps ({size / 1e9:.2f} GB) are kept in a scratch file of "
                     f"{tempfile.gettempdir()} (unlinked at once: nothing is left behind), not in memory")
        self.peak_map_heights = nz if whole else 0
        self.finished, self.late, self._filled, self.live, self.live_maps = {}, set(), {}, {}, {}
        self._done.clear()
        self.centre = self.result = None
        self._radial_values = None if radial is None else np.asarray(radial)

    @property
    def pixels(self):
        """n: the reconstructed slices are n x n."""
        return self.builder.grid.x_mm.size if self.n is None else int(self.n)

    def scan_finished(self, scan):
        if self._greenlet is not None:
            self._stop.set()  # the live greenlet ends between two updates, never within one
            self._greenlet.join()
        try:
            self._take_pending(final=True)
        finally:  # the slices file is closed (and the NXprocess written) whatever failed
            self.finish(scan.filename, scan.entry, self._integration.settings.unit)

    def finish(self, filename=None, entry=None, unit=None):
        """Reconstruct the heights still held, redo from the saved patterns (`filename`,
        `entry`) the heights that frames came for too late or that were reconstructed before
        the centre of rotation was known, then write the NXprocess. Returns `result`."""
        try:
            for h in self.builder.held:
                self._finish(h)
            if not self.finished:
                warn("reconstruction: no integrated frame, nothing to reconstruct")
                return None
            if self.centre is None:
                warn("reconstruction: no complete height to estimate the centre of rotation from; using 0")
                self.centre = 0.0
            redo = sorted(self.late | {h for h, centre in self.finished.items() if centre != self.centre})
            if redo and filename is None:
                warn(f"reconstruction: height(s) {redo} are missing frames that came after they were reconstructed "
                     "(or were reconstructed before the centre of rotation was known), and no file holds the patterns "
                     "to redo them")
            elif redo:
                for h in redo:
                    self._redo(filename, entry, h)
            grid = self.builder.grid
            points = grid.z.size * grid.omega_deg.size * grid.x_mm.size
            maps = self.maps if self.maps is not None else self._stored_maps()
            self.result = {"maps": {p: maps[p] for p in self.phases}, "residual": maps.get("residual"),
                           "units": self.mapper.units, "centre": self.centre, "x_mm": grid.x_mm, "z": np.asarray(grid.z),
                           "radial": self._radial(), "rois": self.rois, "filled": sum(self._filled.values()) / points,
                           "heights": sorted(self.finished), "file": None if self.store is None else self.store.path,
                           "volume_shape": (grid.z.size, self.pixels, self.pixels, self.builder.nq)}
        finally:
            self.builder.drop_spares()
            stored = None
            if self.store is not None and not self.store.closed:
                stored = self.store.close(discard=not self.finished)
        if stored is not None and filename is not None:
            self.write(filename, entry, unit, stored)
        return self.result

    def _stored_maps(self):
        """{name: StoredArray} of the slices file's maps (nz, n, n), read when indexed."""
        from bliss_lite.processing.reduction_files import Stored, StoredArray

        return {name: StoredArray(Stored(self.store.path, f"maps/{name}", self.store.shape[:3]))
                for name in self.mapper.names}

    @property
    def held_map_heights(self):
        """The heights whose maps this hook holds in memory (every height while it keeps them whole)."""
        if self.maps is not None:
            return tuple(range(self.builder.grid.z.size))
        return tuple(sorted(self.live_maps))

    def trim_live(self):
        """Maps not kept whole: `live_maps` keeps only the held heights' and the latest
        KEEP_DONE_HEIGHTS completed heights' maps."""
        if self.maps is None:
            keep = set(self.builder.held) | set(self._done)
            for h in [h for h in self.live_maps if h not in keep]:
                del self.live_maps[h]
            self.peak_map_heights = max(self.peak_map_heights, len(self.live_maps))

    def write(self, filename, entry, unit, stored):
        """The NXprocess `reconstruct` of the entry, referring to the stored volume and maps."""
        from bliss_lite.processing.nexus_output import write_reconstruction

        r = self.result
        axis = self._image_axis(r["x_mm"], self.pixels)
        profile = None if self.mapper.profile is None else self.mapper.profile.to_dict()
        write_reconstruction(filename, entry, stored["volume"], axis, axis, r["z"], r["radial"], unit, stored["maps"],
                             self.configuration(), map_units=r["units"], profile=profile)

    def configuration(self):
        return {"method": self.method, "iterations": self.iterations, "window": self.window,
                "peak_fwhm": self.peak_fwhm, "reference_i0": self.reference_i0,
                "centre_mm": self.centre, "centre_option": self.centre_option, "normalise": self.normalisation,
                "phases": self.phases, "rois": _plain_rois(self.rois), "roi_width": self.roi_width,
                "maps": self.mapper.configuration(),
                "backend": self.resolved, "sinograms_on_gpu": self.builder is not None and self.builder.xp is not np,
                "max_heights": MAX_HEIGHTS}

    # -- patterns in, heights out ------------------------------------------------------------------
    def _on_patterns(self, indices, patterns):
        """Patterns (NumPy, or CuPy from a GPU integration) are kept where the sinograms are."""
        patterns = to_host(patterns) if self.builder.xp is np else self.builder.xp.asarray(patterns)
        self._pending.append((np.asarray(indices), patterns))
        self._dirty = True

    def _take_pending(self, final=False):
        """Patterns whose frames' read-backs are in the scan's buffers go into the sinograms
        (the buffers are read at those frames only: their cost does not grow with the scan).
        A batch that cannot be placed (a read-back off the grid) stays pending and raises;
        `final`: it is left out with a warning, the others go in."""
        if not self._pending:
            return
        valid = f"{self._integration.detector}_valid"
        valid = valid if valid in self._scan.data.buffers else None  # False: a frame of a line redone
        known = min(self._scan.data.count(n) for n in READBACKS + ((valid,) if valid else ()))
        pending, self._pending = self._pending, []
        waiting = []
        for k, (indices, patterns) in enumerate(pending):
            ready = indices < known
            if (~ready).any():
                waiting.append((indices[~ready], take_rows(patterns, ~ready)))
            if valid is not None and ready.any():
                ready[np.flatnonzero(ready)] = np.asarray(self._scan.points(valid, indices[ready]), bool)
            if not ready.any():
                continue
            idx = indices[ready]
            values = [np.asarray(self._scan.points(n, idx), float) for n in READBACKS]  # memory or file
            try:
                self.add_frames(idx, take_rows(patterns, ready), *values)
            except ValueError as exc:
                if not final:
                    self._pending = waiting + pending[k:] + self._pending  # tried again at the next update
                    raise
                warn(f"reconstruction: {idx.size} frame(s) left out: {exc}")
        self._pending = waiting + self._pending

    def add_frames(self, indices, patterns, omega, x, z, i0, it):
        """Place a batch of frames' patterns; each height it completes is reconstructed."""
        from bliss_lite.processing.sinogram import normalise

        indices = np.asarray(indices, np.int64).reshape(-1)
        omega, x, z, i0, it = (np.asarray(v, float).reshape(-1) for v in (omega, x, z, i0, it))
        if self.normalisation != "none":
            if self.reference_i0 is None:
                self.reference_i0 = float(np.mean(i0))
            patterns = normalise(patterns, i0, it if self.normalisation == "i0+transmission" else None,
                                 reference=self.reference_i0)
        heights = self.builder.heights(z, indices)
        _, first = np.unique(heights, return_index=True)
        for h in (int(heights[k]) for k in np.sort(first)):  # in the order the batch meets them
            sel = heights == h
            if h in self.finished:
                self.late.add(h)
                continue
            while h not in self.builder.held and len(self.builder.held) >= self.builder.max_heights:
                self._finish(self.builder.held[0])  # the oldest height, as it is
            self.builder.add(indices[sel], take_rows(patterns, sel), omega[sel], x[sel], z[sel])
            if self.builder.complete(h):
                self._finish(h)

    def _finish(self, h):
        """Reconstruct held height h, write its slice and maps, publish them, free it."""
        radial = self._radial()
        sino, filled = self.builder.sinogram(h), self.builder.filled(h)
        self._rois_for(radial, (sino,))
        image, maps, centre = self._offload(self._reconstruct_height, sino, filled, radial)
        if self.maps is not None:
            for phase, image_map in maps.items():
                self.maps[phase][h] = image_map
        if self.store is not None:
            self.store.write(h, image, maps)
        del image
        self.finished[h], self._filled[h] = centre, int(filled.sum())
        self.live.pop(h, None)
        if self.maps is not None:
            self.live_maps[h] = {phase: self.maps[phase][h] for phase in maps}  # views: no second copy
        else:
            self.live_maps[h] = maps
            if h in self._done:
                self._done.remove(h)
            self._done.append(h)
        self.builder.release(h)
        self.trim_live()
        if self._scan is not None:
            self._publish_live(self._scan, {h: maps}, complete=True)

    def _reconstruct_height(self, sino, filled, radial):
        """(image (n, n, nq) on the host, {phase: map}, the centre used) of one height (the maps
        made where the image is: a decomposition runs on the GPU too)."""
        centre = self._centre_for(sino, filled)
        image = self._reconstruct(sino, centre)
        maps = self.mapper.maps(image, radial)
        return to_host(image), maps, centre

    def _redo(self, filename, entry, h, span=None):
        """Height h again, from the saved patterns of the entry (read in blocks; `span`: the
        frames (first, stop) that hold it, else looked for)."""
        from bliss_lite.processing.reduction_files import height_range, scan_blocks

        span = span or height_range(filename, entry, self.builder.heights, h)
        if span is None:
            return
        self.finished.pop(h, None)
        self.late.discard(h)
        for indices, patterns, omega, x, z, i0, it in scan_blocks(filename, entry, *span):
            sel = self.builder.heights(z, indices) == h
            if sel.any():
                self.add_frames(indices[sel], patterns[sel], omega[sel], x[sel], z[sel], i0[sel], it[sel])
        if h in self.builder.held:
            self._finish(h)

    # -- one height apart (a Dask task per height: processing/dask_reconstruct.py) ----------------
    def prepare_maps(self, radial, summed):
        """The phase mapper made from `summed` (another hook's `summed`), so this hook's maps
        are the ones that hook makes."""
        self._rois_for(radial, summed=summed)

    def height_from_file(self, filename, entry, h, span=None):
        """Reconstruct height h alone from the saved patterns into this hook's store:
        (the centre used, grid points measured), None if no frame is at that height."""
        self._redo(filename, entry, h, span)
        return (self.finished[h], self._filled[h]) if h in self.finished else None

    def take_height(self, h, image, maps, centre, filled):
        """Height h made elsewhere (`height_from_file` of another hook): kept and written as if
        reconstructed here (the maps kept only where they are all kept)."""
        if self.maps is not None:
            for phase, image_map in maps.items():
                self.maps[phase][h] = image_map
        if self.store is not None:
            self.store.write(h, image, maps)
        self.finished[h], self._filled[h] = centre, int(filled)

    def _offload(self, call, *args):
        """call(*args) in the hub's threadpool during a scan (acquisition goes on), else here."""
        if self._scan is None:
            return call(*args)
        import gevent

        return gevent.get_hub().threadpool.apply(call, args)

    # -- live ------------------------------------------------------------------------------------
    def _live_forever(self):
        wait = self.live_period_s
        while not self._stop.wait(wait):
            if self._dirty:
                self._dirty = False
                started = time.perf_counter()
                try:
                    self._live_update()
                except Exception as exc:  # noqa: BLE001 - live view only: the final result is redone
                    warn(f"reconstruction: live update failed: {exc}")
                wait = live_wait(self.live_period_s, time.perf_counter() - started)

    def _live_update(self):
        import gevent

        self._take_pending()
        radial = self._radial()
        if radial is None:
            return
        mapper = self._live_mapper(radial)
        centre = self._live_centre()
        maps = {}
        for iz in self.builder.held:
            if not self.builder.filled(iz).any():
                continue
            if self.info.get("fast_axis") == "x":
                image = gevent.get_hub().threadpool.apply(self._incremental, (iz, centre))
            else:
                image = gevent.get_hub().threadpool.apply(self._partial_fbp, (iz, centre))
            if image is not None:
                maps[iz] = mapper.maps(image, radial)
        if maps:
            self.live_maps.update(maps)
            self.trim_live()
            self.live_updates += 1
            self._publish_live(self._scan, maps, complete=False)

    def _incremental(self, iz, centre):
        from bliss_lite.processing.fbp import IncrementalBackprojector

        grid = self.builder.grid
        if iz not in self.live:
            self.live[iz] = IncrementalBackprojector(grid.omega_deg, grid.x_mm, self.builder.nq, centre, n=self.n,
                                                     window=self.window)
        projector, sino = self.live[iz], self.builder.sinogram(iz)
        for iw in np.flatnonzero(self.builder.filled(iz).all(axis=1)):
            if iw not in projector.added:  # each finished projection once (the CPU's incremental path)
                projector.add(int(iw), to_host(sino[iw]))
        return projector.image() if projector.count else None

    def _partial_fbp(self, iz, centre):
        from bliss_lite.processing.fbp import fbp

        grid = self.builder.grid
        return to_host(fbp(self.builder.sinogram(iz), grid.x_mm, grid.omega_deg, centre, n=self.n,
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
        if self._radial_values is not None:
            return self._radial_values
        radial = self._integration.radial
        if radial is None:
            radial = self._integration.integrator().radial
            self._integration.radial = radial
        return np.asarray(radial)

    def _live_centre(self):
        if self.centre is not None:
            return self.centre
        return 0.0 if self.centre_option == "auto" else float(self.centre_option)

    def _centre_for(self, sino, filled):
        """The centre of rotation for a height: the option, else the estimate from the first
        complete height with signal; 0 for a height reconstructed before there is one (it is
        redone at the end with the centre found later)."""
        if self.centre is not None:
            return self.centre
        if self.centre_option != "auto":
            self.centre = float(self.centre_option)
            return self.centre
        if filled.all():
            from bliss_lite.processing.sinogram import estimate_centre

            grid = self.builder.grid
            try:
                self.centre = float(estimate_centre(sino, grid.x_mm, grid.omega_deg))
                return self.centre
            except ValueError:  # no signal at this height
                pass
        return 0.0

    def _reconstruct(self, sino, centre):
        from bliss_lite.processing.fbp import fbp

        grid, backend = self.builder.grid, self.resolved  # NumPy or CuPy sinogram: the image is the same kind
        start = fbp(sino, grid.x_mm, grid.omega_deg, centre, n=self.n, window=self.window, backend=backend)
        if self.method == "sirt":
            from bliss_lite.processing.sirt import sirt

            return sirt(sino, grid.x_mm, grid.omega_deg, centre, iterations=self.iterations, n=self.n,
                        x0=start.clip(0), backend=backend)
        return start

    def _image_axis(self, x_mm, n):
        from bliss_lite.processing.tomo_grid import image_axis

        return image_axis(x_mm, self.centre or 0.0, n)

    def _rois_for(self, radial, sinograms=(), summed=None):
        """The phase mapper made ready once, from the summed pattern of `sinograms` (what the
        profile and an amorphous reference are measured from when not given), or `summed`."""
        if not self.mapper.ready:
            if summed is None:
                summed = sum(to_host(s.sum(axis=(0, 1))) for s in sinograms) if len(sinograms) else None
            self.summed = summed
            self.mapper.prepare(radial, summed, self.reference_i0 or 1.0)
            self.rois = self.mapper.rois
            self.peak_fwhm = self.peak_fwhm if self.mapper.profile is None else self.mapper.profile.to_dict()["fwhm"]
        return self.rois

    def _live_mapper(self, radial):
        """The scan's mapper once a height is done; before, one made for this update from the
        held sinograms as they are (the scan's own is made from a whole height, whatever the
        timing of the live updates)."""
        if self.mapper.ready:
            return self.mapper
        from copy import copy

        mapper = copy(self.mapper)
        if not self.builder.held:
            return mapper
        summed = sum(to_host(self.builder.sinogram(iz).sum(axis=(0, 1))) for iz in self.builder.held)
        mapper.prepare(radial, summed, self.reference_i0 or 1.0)
        return mapper


def phases_of_sample(scan_info, options):
    """The phases the scan's recorded sample description names (scan_info["sample"]), or None.
    Only their names and calibrants: the peak profile is measured, or comes from the options."""
    sample = (scan_info or {}).get("sample") or {}
    phases = sample.get("phases")
    if not phases:
        return None
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
             "peak_fwhm", "backend", "reference_i0", "maps", "profile", "background", "standards"}
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
    from bliss_lite.processing.phase_mapper import PhaseMapper

    PhaseMapper(phases, options.get("maps", "decomposition"), options.get("profile"), options.get("peak_fwhm"),
                options.get("background", "auto"), options.get("standards"))  # refused here, before anything moves
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
    reference = options.get("reference_i0")
    if reference is not None and (not isinstance(reference, (int, float)) or isinstance(reference, bool)
                                  or not reference > 0):
        raise ValueError(f"reference_i0 must be a number > 0 (the I0 that normalised patterns are scaled to), "
                         f"got {reference!r}")
    return ReconstructionHook(phases, **options)

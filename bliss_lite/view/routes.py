"""The live view's URLs: the page, the event stream, scan snapshots (JSON) and images (PNG).

Handlers that touch the Watcher or render run in the thread pool: the event loop only moves
bytes, so a slow render never delays another page's events.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bliss_lite.data.safe_open import DamagedFile
from bliss_lite.view import images
from bliss_lite.view.pdf_results import UNITS as PDF_UNITS
from bliss_lite.view.pdf_results import Unavailable, number
from bliss_lite.view.watcher import encode_event

STATIC = Path(__file__).with_name("static")
QUEUE_LIMIT = 200  # messages a page may lag behind before it is dropped (it reconnects)
HEARTBEAT_S = 15.0

NO_STORE = {"Cache-Control": "no-store"}
EVENT_STREAM = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class NotFound(Exception):
    pass


def routes():
    return [Route("/", index), Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/events", events), Route("/api/health", health),
            Route("/api/scans", scans), Route("/api/scans/{key}", snapshot),
            Route("/api/scans/{key}/frame.png", frame_png), Route("/api/scans/{key}/patterns", patterns),
            Route("/api/scans/{key}/mesh.png", mesh_png), Route("/api/scans/{key}/map.png", map_png),
            Route("/api/scans/{key}/sinogram.png", sinogram_png), Route("/api/scans/{key}/qmap.png", qmap_png),
            Route("/api/scans/{key}/gr", voxel_gr), Route("/api/scans/{key}/gr_map", gr_map),
            Route("/api/scans/{key}/gr_map.png", gr_map_png)]


async def index(request):
    return FileResponse(STATIC / "index.html", headers=NO_STORE)


async def health(request):
    watcher = request.app.state.watcher
    return JSONResponse({"polls": watcher.polls, "viewers": len(watcher.listeners), "redis_error": watcher.error,
                         "renders": request.app.state.cache.renders, "current": watcher.current,
                         "poisoned": dict(watcher.poisoned)})


async def scans(request):
    watcher = request.app.state.watcher
    if not watcher.listeners:  # nobody keeps the watcher polling: read Redis now
        await run_in_threadpool(watcher.tick)
    return JSONResponse({"scans": watcher.recent, "current": watcher.current})


async def events(request):
    """Server-sent events: `scans`, `scan`, `plotselect`, `status`; a page that lags more than
    QUEUE_LIMIT messages is dropped and reconnects (then asks for a fresh snapshot)."""
    watcher = request.app.state.watcher
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()

    def put(data):
        queue.put_nowait(data if queue.qsize() < QUEUE_LIMIT else None)

    def listener(data):
        loop.call_soon_threadsafe(put, data)

    async def stream():
        watcher.subscribe(listener)
        try:
            yield encode_event("scans", {"scans": watcher.recent, "current": watcher.current})
            for session, names in list(watcher.plotselect.items()):
                yield encode_event("plotselect", {"session": session, "counters": names})
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if data is None:
                    return
                yield data
        finally:
            watcher.unsubscribe(listener)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=EVENT_STREAM)


async def _scan(request):
    scan = await run_in_threadpool(request.app.state.watcher.scan, request.path_params["key"])
    if scan is None:
        raise NotFound(f"no scan {request.path_params['key']} in Redis")
    request.app.state.watcher.want(scan.key)
    return scan


def _handled(handler):
    async def wrapped(request):
        try:
            return await handler(request)
        except NotFound as exc:
            return PlainTextResponse(str(exc), status_code=404)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        except DamagedFile as exc:  # a file there but damaged: the file and what is wrong
            return PlainTextResponse(str(exc), status_code=409)
        except Unavailable as exc:
            return PlainTextResponse(str(exc), status_code=503, headers={"Retry-After": "1"})
    wrapped.__name__ = handler.__name__
    return wrapped


@_handled
async def snapshot(request):
    data = await run_in_threadpool(request.app.state.watcher.snapshot, request.path_params["key"])
    if data is None:
        raise NotFound(f"no scan {request.path_params['key']} in Redis")
    return JSONResponse(data, headers=NO_STORE)


async def _png(request, scan, kind, params, version, render):
    data = await run_in_threadpool(request.app.state.cache.get, (scan.key, kind, params, version), render)
    return Response(data, media_type="image/png", headers=NO_STORE)


@_handled
async def frame_png(request):
    scan = await _scan(request)
    if scan.frame is None:
        raise NotFound(f"scan {scan.reader.number} has no frame in Redis yet")
    frame = scan.frame
    response = await _png(request, scan, "frame", (), frame[0],
                          lambda: images.frame_png(scan.frame_array(frame)))
    response.headers["X-Frame-Index"] = str(frame[0])
    return response


@_handled
async def patterns(request):
    scan = await _scan(request)
    curves = scan.pattern_curves()
    if curves is None:
        raise NotFound(f"scan {scan.reader.number} has no integrated pattern yet")
    return JSONResponse(curves, headers=NO_STORE)


@_handled
async def mesh_png(request):
    scan = await _scan(request)
    counter = request.query_params.get("counter") or (scan.info.get("plot") or {}).get("signal")
    if scan.info.get("shape") is None:
        raise ValueError(f"scan {scan.reader.number} is not a mesh")
    if counter not in scan.points:
        raise ValueError(f"counter {counter!r} is not in scan {scan.reader.number}")
    def render():
        image = scan.mesh_image(counter)
        return images.map_png(image, ~np.isnan(image))

    return await _png(request, scan, "mesh", counter, scan.versions["points"], render)


def _int_param(request, name, size, what):
    raw = request.query_params.get(name, "0")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: give a whole number") from None
    if not 0 <= value < size:
        raise ValueError(f"{name}={value}: {what} runs from 0 to {size - 1}")
    return value


@_handled
async def map_png(request):
    scan = await _scan(request)
    phase = request.query_params.get("phase")
    z = _int_param(request, "z", len(scan.info.get("xrdct", {}).get("z_positions", [0])), "the z index")
    image = await run_in_threadpool(scan.map_image, z, phase)
    if image is None:
        held = (z, phase) in scan.map_state
        raise NotFound(f"no map of phase {phase!r} at z index {z} " + (
            "held any more, and the scan's reconstructed.h5 cannot be read from here" if held else
            f"yet (phases: {sorted({p for _, p in scan.map_state})})"))
    return await _png(request, scan, "map", (phase, z), scan.versions["maps"], lambda: images.map_png(image))


def _sinogram_slice(request, scan):
    if scan.sinograms is None:
        raise NotFound(f"scan {scan.reader.number} has no live sinogram (not XRD-CT, not integrated yet, or too large)")
    sino = scan.sinograms.sinograms
    q_bin = _int_param(request, "bin", sino.data.shape[-1], "the q bin")
    z = _int_param(request, "z", sino.data.shape[0], "the z index")
    return sino, q_bin, z


@_handled
async def sinogram_png(request):
    scan = await _scan(request)
    sino, q_bin, z = _sinogram_slice(request, scan)
    return await _png(request, scan, "sinogram", (q_bin, z), scan.versions["patterns"],
                      lambda: images.map_png(sino.data[z, :, :, q_bin], sino.filled[z]))


@_handled
async def qmap_png(request):
    """The reconstruction of one q bin from the projections measured so far."""
    scan = await _scan(request)
    sino, q_bin, z = _sinogram_slice(request, scan)
    return await _png(request, scan, "qmap", (q_bin, z), scan.versions["patterns"],
                      lambda: images.map_png(reconstruct_bin(sino, q_bin, z)))


def reconstruct_bin(sino, q_bin, z):
    """FBP of one q bin of slice z (unmeasured points count as zero), centre of rotation
    estimated from the measured projections (the middle of the x range until there are 3)."""
    from bliss_lite.processing.fbp import fbp
    from bliss_lite.processing.sinogram import estimate_centre

    data = sino.data[z, :, :, q_bin]
    rows = sino.filled[z].all(axis=1)
    try:
        centre = estimate_centre(data[rows], sino.x_mm, sino.omega_deg[rows])
    except ValueError:
        centre = float(np.mean(sino.x_mm))
    return fbp(data, sino.x_mm, sino.omega_deg, centre)


# -- PDF-CT: G(r) of a voxel, maps over an r window (read from the scan's pdf.h5) -------------------
def _pdf(scan):
    if scan.pdf is None and scan.pdf_error:
        raise DamagedFile(f"scan {scan.reader.number}: PDF-CT results cannot be read: {scan.pdf_error}")
    if scan.pdf is None:
        raise NotFound(f"scan {scan.reader.number} has no PDF-CT results (no pdf hook or pdf_scan job ran, "
                       "or its file is not reachable from the view)")
    return scan.pdf


@_handled
async def voxel_gr(request):
    """{"r", "G", "units", "z", "row", "col", "z_mm", "y_mm", "x_mm"} of one voxel."""
    scan = await _scan(request)
    pdf = _pdf(scan)
    nz, ny, nx, _ = pdf.shape
    z = _int_param(request, "z", nz, "the z index")
    row = _int_param(request, "row", ny, "the row (y) index")
    col = _int_param(request, "col", nx, "the column (x) index")
    return JSONResponse(await run_in_threadpool(pdf.voxel, z, row, col), headers=NO_STORE)


async def _window_map(request, scan):
    """((map, r of its first and last point), z, r_min, r_max) from the query, cached by data version."""
    pdf = _pdf(scan)
    z = _int_param(request, "z", pdf.shape[0], "the z index")
    r_min = number(request.query_params.get("r_min"), "r_min")
    r_max = number(request.query_params.get("r_max"), "r_max")
    pdf.window(r_min, r_max)  # refused here, before the file is read
    version = await run_in_threadpool(lambda: pdf.version)
    result = await run_in_threadpool(request.app.state.cache.get, (scan.key, "gr_map", (z, r_min, r_max), version),
                                     lambda: pdf.window_map(z, r_min, r_max))
    return result, z, r_min, r_max, version


@_handled
async def gr_map(request):
    """The mean of G(r) over [r_min, r_max] at height z: its range and r points used, and its
    values (rows of y, columns of x; `values=0` leaves them out)."""
    scan = await _scan(request)
    (image, used), z, r_min, r_max, _ = await _window_map(request, scan)
    finite = image[np.isfinite(image)]
    answer = {"z": z, "r_min": r_min, "r_max": r_max, "r_used": list(used), "shape": list(image.shape),
              "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None,
              "units": PDF_UNITS}
    if request.query_params.get("values", "1") != "0":
        answer["values"] = [[v if np.isfinite(v) else None for v in row] for row in image.astype(float).tolist()]
    return JSONResponse(answer, headers=NO_STORE)


@_handled
async def gr_map_png(request):
    scan = await _scan(request)
    (image, _), z, r_min, r_max, version = await _window_map(request, scan)
    return await _png(request, scan, "gr_map.png", (z, r_min, r_max), version, lambda: images.map_png(image))

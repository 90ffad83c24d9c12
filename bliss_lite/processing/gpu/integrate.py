"""Azimuthal integration of batches of frames on the GPU, copies overlapped with compute.

The bus is the wall: an int32 Pilatus 2M frame is 9.9 MB, ~5,000 frames/s at ~50 GB/s, while
the GPU integrates ~10x more. So compressed frames (Bitshuffle-LZ4, ~7x smaller) cross the
bus and are decoded there (`bslz4_decode`); int32 frames cross as they are. Batches go
round a few slots, each with its own stream and pinned buffers: while the GPU decodes and
integrates one batch, the next one's bytes cross the bus and the host stages the one after.
The matrix, mask and normalisation are the LeanIntegrator's own, so the patterns are the
CPU path's (float32 sums in a different order: within 1e-6 relative). Measured on an H200
(Pilatus 2M, 0.73 MB chunks): batches of 32 frames 15,900 frames/s, 64: 19,900, 128:
20,700-27,500 (runs differ); the GPU alone ~41,000, the host's staging alone ~30,000 (8
threads; more threads are slower), so the host sets the pace.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bliss_lite.processing.gpu import bslz4_decode
from bliss_lite.processing.gpu.bin_sum import BinSum
from bliss_lite.processing.gpu.bslz4_format import read_layout
from bliss_lite.processing.gpu.staging import Stager, is_pinned, pinned_empty

H2D, D2H = 1, 2  # cudaMemcpyKind


def _finish_kernel():
    import cupy

    return cupy.ElementwiseKernel("float32 s, raw float32 dark, raw float32 inv, int32 npt", "float32 r",
                                  "const int b = i % npt; r = (s - dark[b]) * inv[b];", "bliss_lite_finish")


class _Slot:
    """One batch in flight: a stream, its device buffers and pinned host buffers."""

    def __init__(self, batch, npt, stride):
        import cupy

        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.done = cupy.cuda.Event(disable_timing=True)
        self.frames = cupy.empty((batch, stride), np.int32)
        self.sums = cupy.empty((batch, npt), np.float32)
        self.result = cupy.empty((batch, npt), np.float32)
        self.errors = cupy.zeros(batch, np.int32)
        self.host_result = pinned_empty((batch, npt), np.float32)
        self.host_errors = pinned_empty(batch, np.int32)
        self.host_frames = None  # pinned, for int32 frames in ordinary memory
        self.src = self.host_src = None  # compressed chunks, grown as needed
        self.positions = self.host_positions = self.ends = self.host_ends = None
        self.pending = None  # (first frame, count, compressed) of the batch in flight

    def reserve(self, nbytes):
        """Room for `nbytes` of staged chunks (Stager.stage_chunks calls it)."""
        import cupy

        if self.host_src is None or self.host_src.size < nbytes:
            size = int(nbytes * 1.25) + 4096
            self.host_src = pinned_empty(size, np.uint8)
            self.src = cupy.empty(size, np.uint8)

    def reserve_index(self, batch, blocks):
        import cupy

        if self.host_positions is None or self.host_positions.shape[1] != blocks:
            self.host_positions = pinned_empty((batch, blocks), np.int64)
            self.positions = cupy.empty((batch, blocks), np.int64)
            self.host_ends = pinned_empty(batch, np.int64)
            self.ends = cupy.empty(batch, np.int64)


class _ChunkTarget:
    """What Stager.stage_chunks writes into: a slot's pinned chunk buffers."""

    def __init__(self, slot):
        self.slot = slot

    def reserve(self, nbytes):
        self.slot.reserve(nbytes)

    @property
    def src(self):
        return self.slot.host_src

    @property
    def positions(self):
        return self.slot.host_positions

    @property
    def ends(self):
        return self.slot.host_ends


def _copy(dst_ptr, src_ptr, nbytes, kind, stream):
    import cupy

    if nbytes:
        cupy.cuda.runtime.memcpyAsync(dst_ptr, src_ptr, nbytes, kind, stream.ptr)


class GpuIntegrator:
    """A LeanIntegrator's integration on the GPU: `integrate_frames` (int32 frames in host
    memory), `integrate_chunks` (Bitshuffle-LZ4 chunks), `integrate_device` (a CuPy array of
    frames already on the GPU). Results are (frames, npt) float32 numpy arrays, or CuPy arrays
    left on the GPU with `device=True` (for a sinogram reconstructed there: no round trip)."""

    def __init__(self, lean, batch=128, slots=3, threads=None):
        import cupy

        self.shape, self.npt = lean.shape, lean.npt
        self.npix = int(np.prod(self.shape))
        self.stride = -(-self.npix // 32) * 32  # decoded frames: rows 16-byte aligned
        self.batch, self.nslots = int(batch), int(slots)
        self.product = BinSum(lean.matrix)
        dark = np.zeros(self.npt) if lean.dark_sum is None else lean.dark_sum
        inverse = np.where(lean.empty, 0.0, 1.0 / lean.denominator)
        self._dark = cupy.asarray(dark, np.float32)
        self._inverse = cupy.asarray(inverse, np.float32)
        self._finish = _finish_kernel()
        self._slots = None
        self.stager = Stager(threads)

    # --- public ---------------------------------------------------------------------------------

    def integrate_device(self, frames):
        """(k, rows, columns) or (k, stride) int32 CuPy array -> (k, npt) float32 CuPy array."""
        import cupy

        frames = cupy.ascontiguousarray(frames, dtype=np.int32).reshape(len(frames), -1)
        sums = cupy.empty((len(frames), self.npt), np.float32)
        self.product(frames, sums)
        return self._finish(sums, self._dark, self._inverse, np.int32(self.npt))

    def integrate_frames(self, frames, device=False):
        """(k, rows, columns) frames (int32, host memory) -> (k, npt) float32 patterns."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.shape:
            raise ValueError(f"integration: frames must be (k, {self.shape[0]}, {self.shape[1]}), got {frames.shape}")
        if frames.dtype != np.int32:
            frames = frames.astype(np.int32)
        flat = frames.reshape(len(frames), self.npix)
        direct = flat.flags.c_contiguous and is_pinned(flat)

        def stage(slot, first, count):
            if direct:
                return
            if slot.host_frames is None:
                slot.host_frames = pinned_empty((self.batch, self.npix), np.int32)
            self.stager.copy_rows(flat[first:first + count], slot.host_frames)

        def enqueue(slot, first, count):
            source = flat[first:first + count] if direct else slot.host_frames
            frames_dev = slot.frames.reshape(-1)[:count * self.npix].reshape(count, self.npix)
            _copy(frames_dev.data.ptr, source.ctypes.data, count * self.npix * 4, H2D, slot.stream)
            return frames_dev

        return self._pipeline(len(frames), stage, enqueue, compressed=False, device=device)

    def integrate_chunks(self, chunks, dtype=np.int32, device=False):
        """Bitshuffle-LZ4 chunks (bytes-like, `bliss_lite.data.bslz4`) of frames of the
        integrator's shape -> (k, npt) float32 patterns; ValueError names a chunk that does not
        decode. A Sequence is sliced a batch at a time as the pipeline goes (one that reads its
        chunks on demand, e.g. from a file, never holds them all), anything else is listed first."""
        if not isinstance(chunks, Sequence):
            chunks = list(chunks)
        if not chunks:
            return self._empty(0, device)
        layout = read_layout(chunks[0], self.shape, dtype)

        def stage(slot, first, count):
            slot.reserve_index(self.batch, max(layout.blocks, 1))
            slot.used = self.stager.stage_chunks(chunks[first:first + count], _ChunkTarget(slot), layout, first)

        def enqueue(slot, first, count):
            stream = slot.stream
            _copy(slot.src.data.ptr, slot.host_src.ctypes.data, slot.used, H2D, stream)
            _copy(slot.positions.data.ptr, slot.host_positions.ctypes.data, count * slot.host_positions.shape[1] * 8,
                  H2D, stream)
            _copy(slot.ends.data.ptr, slot.host_ends.ctypes.data, count * 8, H2D, stream)
            with stream:
                slot.errors[:count].fill(0)
            bslz4_decode.decode(slot.src, slot.positions, slot.ends, layout, slot.frames[:count],
                                slot.errors, stream)
            return slot.frames[:count]

        return self._pipeline(len(chunks), stage, enqueue, compressed=True, device=device)

    def decode_chunks(self, chunks, dtype=np.int32):
        """The frames themselves, decoded on the GPU: (k, rows, columns) int32 numpy array
        (to check the decoder bit for bit against the CPU's)."""
        import cupy

        chunks = list(chunks)
        layout = read_layout(chunks[0], self.shape, dtype)
        out = np.empty((len(chunks),) + self.shape, np.int32)
        slot = self._get_slots()[0]
        for first in range(0, len(chunks), self.batch):
            count = min(self.batch, len(chunks) - first)
            slot.reserve_index(self.batch, max(layout.blocks, 1))
            used = self.stager.stage_chunks(chunks[first:first + count], _ChunkTarget(slot), layout, first)
            slot.src[:used].set(slot.host_src[:used])
            slot.positions[:count].set(slot.host_positions[:count])
            slot.ends[:count].set(slot.host_ends[:count])
            slot.errors.fill(0)
            bslz4_decode.decode(slot.src, slot.positions, slot.ends, layout, slot.frames[:count], slot.errors)
            cupy.cuda.Device().synchronize()
            self._check(slot.errors[:count].get(), first)
            out[first:first + count] = slot.frames[:count, :self.npix].get().reshape((count,) + self.shape)
        return out

    # --- the pipeline ---------------------------------------------------------------------------

    def _get_slots(self):
        if self._slots is None:
            self._slots = [_Slot(self.batch, self.npt, self.stride) for _ in range(self.nslots)]
        return self._slots

    def _empty(self, count, device):
        if device:
            import cupy

            return cupy.empty((count, self.npt), np.float32)
        return np.empty((count, self.npt), np.float32)

    def _pipeline(self, count, stage, enqueue, compressed, device=False):
        """Batches round the slots; `device`: the patterns are finished straight into a CuPy
        array (no copy back), else copied into pinned buffers and from there into `out`."""
        out = self._empty(count, device)
        slots = self._get_slots()
        try:
            for i, first in enumerate(range(0, count, self.batch)):
                slot = slots[i % len(slots)]
                self._harvest(slot, out)
                n = min(self.batch, count - first)
                stage(slot, first, n)
                frames = enqueue(slot, first, n)
                self.product(frames, slot.sums[:n], slot.stream)
                result = out[first:first + n] if device else slot.result[:n]
                with slot.stream:
                    self._finish(slot.sums[:n], self._dark, self._inverse, np.int32(self.npt), result)
                if not device:
                    _copy(slot.host_result.ctypes.data, slot.result.data.ptr, n * self.npt * 4, D2H, slot.stream)
                if compressed:
                    _copy(slot.host_errors.ctypes.data, slot.errors.data.ptr, n * 4, D2H, slot.stream)
                slot.done.record(slot.stream)
                slot.pending = (first, n, compressed, device)
            for slot in slots:
                self._harvest(slot, out)
        finally:
            for slot in slots:  # after an error: nothing left in flight writes into reused buffers
                slot.stream.synchronize()
                slot.pending = None
        return out

    def _harvest(self, slot, out):
        if slot.pending is None:
            return
        first, n, compressed, device = slot.pending
        slot.done.synchronize()
        slot.pending = None
        if compressed:
            self._check(slot.host_errors[:n], first)
        if not device:
            out[first:first + n] = slot.host_result[:n]

    @staticmethod
    def _check(errors, first):
        bad = np.flatnonzero(errors)
        if bad.size:
            raise ValueError(f"bslz4: chunk {first + int(bad[0])} does not decode on the GPU (corrupt LZ4 block)")

    def close(self):
        self.stager.close()
        self._slots = None

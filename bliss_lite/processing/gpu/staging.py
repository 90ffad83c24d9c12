"""Host side of the GPU pipelines: page-locked (pinned) buffers, filled by a few threads.

Only pinned memory is copied to the GPU at the bus's full rate and asynchronously (a copy
from ordinary memory goes through the driver's own staging, synchronously). Frames arrive
in ordinary memory (bytes from Redis, arrays from a file), so each batch is first copied into
a pinned buffer; at ~10 GB/s a thread, that takes several threads (numpy releases the GIL
while copying), and the chunk index is made by the same thread right after its copy, while
the chunk is still in its cache.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bliss_lite.processing.gpu.bslz4_format import index_chunks

ALIGN = 16  # chunk starts in the staging buffer


def pinned_empty(shape, dtype) -> np.ndarray:
    """A numpy array in page-locked host memory (fast, asynchronous copies to and from the GPU)."""
    import cupy

    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    memory = cupy.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
    return np.frombuffer(memory, dtype, count).reshape(shape)


def is_pinned(array: np.ndarray) -> bool:
    """Whether a numpy array lies in page-locked memory (then it is copied without staging)."""
    import cupy

    if array.size == 0:
        return False
    try:
        attributes = cupy.cuda.runtime.pointerGetAttributes(array.ctypes.data)
    except cupy.cuda.runtime.CUDARuntimeError:
        return False
    return attributes.type == cupy.cuda.runtime.memoryTypeHost


class Stager:
    """Copies batches into pinned buffers with `threads` threads."""

    def __init__(self, threads=None):
        self.threads = threads or max(1, min(8, (os.cpu_count() or 2) // 2))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gpu-stage")

    def _parts(self, count):
        parts = min(self.threads, count)
        edges = np.linspace(0, count, parts + 1).astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def _map(self, fn, count):
        parts = self._parts(count)
        if len(parts) == 1:
            fn(*parts[0])
            return
        for future in [self._pool.submit(fn, a, b) for a, b in parts]:
            future.result()

    def copy_rows(self, source: np.ndarray, target: np.ndarray):
        """target[:len(source)] = source, rows split among the threads."""
        def part(a, b):
            target[a:b] = source[a:b]
        self._map(part, len(source))

    def stage_chunks(self, chunks, buffers, layout, first=0):
        """Copy the compressed chunks into buffers.src (growing it when needed) and index them:
        buffers.positions (frames, blocks), buffers.ends (frames,). Returns the bytes used.
        `first`: the number of the first chunk, for error messages."""
        lengths = np.fromiter((len(c) for c in chunks), np.int64, len(chunks))
        padded = -(-lengths // ALIGN) * ALIGN
        starts = np.zeros(len(chunks), np.int64)
        np.cumsum(padded[:-1], out=starts[1:])
        used = int(starts[-1] + lengths[-1]) if len(chunks) else 0
        buffers.reserve(used)
        src, positions = buffers.src, buffers.positions
        buffers.ends[:len(chunks)] = starts + lengths

        def part(a, b):
            for i in range(a, b):
                src[starts[i]:starts[i] + lengths[i]] = np.frombuffer(chunks[i], np.uint8)
            index_chunks(src, starts[a:b], lengths[a:b], layout, positions[a:b], first + a)
        self._map(part, len(chunks))
        return used

    def close(self):
        self._pool.shutdown(wait=False)

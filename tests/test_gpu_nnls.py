"""The batched NNLS on the GPU solves its voxels in blocks of BATCH_COLUMNS (the systems of a
1000 x 1000 slice at once would take GBs): blocks of any size give the answer of one block,
and the answer of the CPU's grouped solve. Needs CuPy and a CUDA device; skipped elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

from bliss_lite.processing import gpu
from bliss_lite.processing import nnls as nnls_module
from bliss_lite.processing.nnls import nnls

pytestmark = pytest.mark.skipif(not gpu.available(), reason=f"no GPU here: {gpu.unavailable_reason()}")


def mixtures(voxels, seed):
    """Patterns of `voxels` voxels, each a non-negative mix of 7 components two of which are
    nearly collinear (the hard case), with noise."""
    rng = np.random.default_rng(seed)
    design = np.abs(rng.standard_normal((80, 7)))
    design[:, 1] = 0.95 * design[:, 0] + 0.05 * design[:, 1]
    truth = np.where(rng.random((voxels, 7)) < 0.5, 0.0, rng.random((voxels, 7)))
    return design, truth @ design.T + 0.3 * rng.standard_normal((voxels, 80))


def test_blocks_of_any_size_give_the_answer_of_one_block_and_of_the_cpu(monkeypatch):
    import cupy

    design, patterns = mixtures(5000, seed=3)
    whole = nnls(design, patterns, xp=cupy).get()
    monkeypatch.setattr(nnls_module, "BATCH_COLUMNS", 777)  # uneven blocks, the last one short
    blocks = nnls(design, patterns, xp=cupy).get()
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-12)
    assert whole.min() >= 0 and np.abs(whole - nnls(design, patterns)).max() < 1e-8


def test_more_voxels_than_one_block_are_all_solved():
    """300,000 voxels (a 550 x 550 slice): two blocks of the default size."""
    import cupy

    design, patterns = mixtures(300_000, seed=4)
    assert patterns.shape[0] > nnls_module.BATCH_COLUMNS
    got = nnls(design, patterns, xp=cupy).get()
    sample = np.r_[0:2000, nnls_module.BATCH_COLUMNS - 1000:nnls_module.BATCH_COLUMNS + 1000, 298_000:300_000]
    assert got.min() >= 0 and np.abs(got[sample] - nnls(design, patterns[sample])).max() < 1e-8

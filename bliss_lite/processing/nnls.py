"""Non-negative least squares for many patterns at once: min ||A x - y|| with x >= 0 for
every voxel's pattern y against the same few components A.

scipy.optimize.nnls solves one pattern per call (a 400 x 400 slice is 160,000 calls). Here the
problem is put in normal form once (G = A^T A, k x k; B = A^T Y, one GEMM over all voxels)
and solved by block principal pivoting (Kim & Park, "Fast nonnegative matrix factorization",
SIAM J. Sci. Comput. 33, 2011): every voxel exchanges all its infeasible variables at once,
with Murty's single-variable backup rule so it cannot cycle. On NumPy the voxels that share a
set of passive variables are solved together with one small k x k solve; on CuPy every voxel's
passive-set system goes into one batched k x k solve (one kernel, no host syncs per set). The exact solution in a
few iterations, vectorised over voxels; NumPy or CuPy arrays (`xp`), the same algorithm.
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 1e-10  # relative: a variable counts as negative below -TOLERANCE * the voxel's scale
BATCH_COLUMNS = 1 << 18  # columns per batched solve on the GPU: ~150 MB of float64 systems at k = 8
RIDGE = 1e-12  # relative to G's largest diagonal: keeps a component that is zero (no peak in range) solvable


def nnls_normal(gram, rhs, xp=np, max_iter=None):
    """x (k, n) >= 0 minimising 0.5 x^T G x - b^T x for each column b of `rhs` (k, n);
    `gram` (k, k) symmetric positive definite. float64 throughout."""
    gram = xp.asarray(gram, dtype=xp.float64)
    gram = gram + RIDGE * float(xp.abs(xp.diagonal(gram)).max() or 1.0) * xp.eye(gram.shape[0])  # a zero component
    rhs = xp.asarray(rhs, dtype=xp.float64)
    k, n = rhs.shape
    if gram.shape != (k, k):
        raise ValueError(f"gram {gram.shape} does not match {k} components")
    scale = xp.abs(rhs).max(axis=0) + 1e-300  # per voxel, for the tolerance
    x = xp.zeros_like(rhs)
    y = -rhs
    passive = xp.linalg.solve(gram, rhs) > 0  # start from the unconstrained solution's signs
    alpha = xp.full(n, 3, dtype=xp.int8)  # exchanges of the full set left before the backup rule
    beta = xp.full(n, k + 1, dtype=xp.int16)  # fewest infeasible variables seen
    todo = xp.ones(n, dtype=bool)
    bits = xp.asarray((2 ** np.arange(k)).astype(np.int64))[:, None]
    for _ in range(max_iter or 10 * k + 10):
        if xp is np:  # on a CPU a solve per passive set is 2-4x faster than one per column
            _solve_groups(gram, rhs, passive, x, y, xp.flatnonzero(todo), bits, xp)
        else:
            _solve_batched(gram, rhs, passive, x, y, xp.flatnonzero(todo), xp)
        infeasible = (passive & (x < -TOLERANCE * scale)) | (~passive & (y < -TOLERANCE * scale))
        count = infeasible.sum(axis=0)
        todo = count > 0
        if not bool(todo.any()):
            return xp.maximum(x, 0.0)
        better = todo & (count < beta)
        beta = xp.where(better, count, beta).astype(xp.int16)
        alpha = xp.where(better, 3, alpha).astype(xp.int8)
        full = better | (todo & (alpha >= 1))
        alpha = xp.where(todo & ~better & (alpha >= 1), alpha - 1, alpha).astype(xp.int8)
        single = todo & ~full
        exchange = infeasible & full[None, :]
        if bool(single.any()):  # the backup rule: only the last infeasible variable
            last = k - 1 - xp.argmax(infeasible[::-1], axis=0)
            exchange[last[single], xp.flatnonzero(single)] = True
        passive ^= exchange
    raise RuntimeError(f"nnls: {int(todo.sum())} of {n} patterns did not converge")


def _solve_batched(gram, rhs, passive, x, y, columns, xp):
    """x and the gradient y = G x - b of `columns`, solved with x = 0 outside each column's
    passive set. All columns at once: column j solves (P G P + I - P) x = P b, P its passive
    set's diagonal, which is G's passive block with the identity elsewhere: one batched k x k
    solve (a single kernel on a GPU, where a solve per passive set cost a launch and a host
    sync each, up to 2^k per pass), the same x as _solve_groups. In blocks of BATCH_COLUMNS
    columns: the systems of a 1000 x 1000 slice at once would take GBs of temporaries."""
    for first in range(0, int(columns.size), BATCH_COLUMNS):
        _solve_batch(gram, rhs, passive, x, y, columns[first:first + BATCH_COLUMNS], xp)


def _solve_batch(gram, rhs, passive, x, y, columns, xp):
    if columns.size == 0:
        return
    p = passive[:, columns].T.astype(xp.float64)  # (m, k): 1 where passive
    b = rhs[:, columns].T  # (m, k)
    k = gram.shape[0]
    systems = p[:, :, None] * gram[None, :, :] * p[:, None, :]
    systems += (1.0 - p)[:, :, None] * xp.eye(k)[None, :, :]
    xs = xp.linalg.solve(systems, (p * b)[:, :, None])[:, :, 0] * p  # (m, k)
    grad = xs @ gram - b  # gram symmetric: (G x - b)^T row-wise
    x[:, columns] = xs.T
    y[:, columns] = (grad * (1.0 - p)).T


def _solve_groups(gram, rhs, passive, x, y, columns, bits, xp):
    """x and the gradient y = G x - b of `columns`, solved with x = 0 outside each column's
    passive set; columns with the same set share one solve."""
    if columns.size == 0:
        return
    codes = (passive[:, columns] * bits).sum(axis=0)
    order = xp.argsort(codes)
    columns, codes = columns[order], codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(_host(codes))) + 1, int(columns.size)]
    sets = _host(passive[:, columns[starts[:-1]]]).T
    for first, stop, free in zip(starts[:-1], starts[1:], sets):
        cols = columns[first:stop]
        f = np.flatnonzero(free)
        b = rhs[:, cols]
        if f.size == 0:
            x[:, cols] = 0.0
            y[:, cols] = -b
            continue
        fx = xp.asarray(f)
        xf = xp.linalg.solve(gram[fx[:, None], fx[None, :]], b[fx])
        xs = xp.zeros_like(b)
        xs[fx] = xf
        x[:, cols] = xs
        grad = gram[:, fx] @ xf - b
        grad[fx] = 0.0
        y[:, cols] = grad


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def nnls(design, patterns, xp=np):
    """x (n, k) >= 0 minimising ||design @ x_i - patterns_i|| for each of `patterns` (n, nq);
    `design` (nq, k)."""
    design = xp.asarray(design, dtype=xp.float64)
    patterns = xp.asarray(patterns, dtype=xp.float64).reshape(-1, design.shape[0])
    return nnls_normal(design.T @ design, design.T @ patterns.T, xp).T

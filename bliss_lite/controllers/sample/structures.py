"""Atomic structures of the PDF-CT sample's phases: atom positions, from which debye.py computes
what each phase scatters and its reference G(r).

- `silica_glass`: a silica-like network: beta-cristobalite's Si sites (Si-Si 3.10 A) with each
  bridging O pushed off the Si-Si line in a random direction so that Si-O = 1.61 A (Si-O-Si
  ~147 deg, O-O ~2.6 A), in a periodic 2 x 2 x 2 supercell; distance-dependent (paracrystalline)
  broadening then removes order beyond ~10 A, as in a glass.
- `fcc_particle`: a spherical nanoparticle of an fcc metal (finite cluster: the Debye sum over
  all its pairs, small-angle scattering and its shape function included).
- `fluorite_crystal`: a crystalline fluorite (CeO2), periodic.
- `dimer`: two atoms, for the analytic check of the Debye sum.
Lengths in angstrom.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Structure:
    """Atoms of one phase. `cell` (3 x 3, rows are lattice vectors): periodic (bulk), its
    positions are the cell's atoms; None: a finite cluster. `sigma` (A) broadens every pair
    distance, growing as sqrt(sigma^2 + (growth * r)^2) (growth > 0: a glass)."""

    name: str
    elements: tuple
    positions: np.ndarray
    cell: np.ndarray | None = None
    sigma: float = 0.05
    growth: float = 0.0
    density: float | None = None  # atoms / A^3 of the bulk material (clusters: their lattice's)
    r_max: float = 40.0  # bulk: pair distances counted to here (A): a coherent domain of this diameter
    notes: dict = field(default_factory=dict)

    @property
    def composition(self):
        counts = {}
        for e in self.elements:  # in the order the atoms are listed: "SiO2", not "O2Si"
            counts[e] = counts.get(e, 0) + 1
        return counts

    @property
    def formula(self):
        counts = self.composition
        g = int(np.gcd.reduce(list(counts.values())))
        return "".join(f"{e}{c // g if c // g > 1 else ''}" for e, c in counts.items())

    @property
    def number_density(self):
        if self.cell is not None:
            return len(self.elements) / abs(float(np.linalg.det(self.cell)))
        return self.density

    def pair_sigma(self, r):
        return np.sqrt(self.sigma ** 2 + (self.growth * np.asarray(r)) ** 2)


def dimer(element="N", d=1.098):
    return Structure(f"{element}2", (element, element), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, d]]), sigma=0.0)


def _fcc_basis():
    return np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], float)


def fcc_particle(element="Ni", a=3.524, diameter=40.0, sigma=0.07):
    """A sphere of `diameter` (A) cut from an fcc lattice of parameter a."""
    n = int(np.ceil(diameter / a / 2)) + 1
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    positions = ((grid + _fcc_basis()[None]) * a).reshape(-1, 3)
    positions = positions[np.linalg.norm(positions, axis=1) <= diameter / 2]
    return Structure(f"{element}_nano", (element,) * len(positions), positions, sigma=sigma,
                     density=4 / a ** 3, notes={"diameter_A": diameter, "a_A": a, "first_peak_A": a / np.sqrt(2)})


def fluorite_crystal(cation="Ce", a=5.411, sigma=0.06, r_max=100.0):
    """The fluorite structure (CeO2): cations on fcc sites, anions at the (1/4, 1/4, 1/4) sites."""
    cations = _fcc_basis()
    anions = (cations[:, None, :] + np.array([[0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])[None]).reshape(-1, 3) % 1.0
    positions = np.vstack([cations, anions]) * a
    elements = (cation,) * 4 + ("O",) * 8
    return Structure(f"{cation}O2", elements, positions, cell=np.eye(3) * a, sigma=sigma, r_max=r_max,
                     notes={"a_A": a, "first_peak_A": a * np.sqrt(3) / 4})


def silica_glass(a=7.16, si_o=1.61, sigma=0.045, growth=0.025, seed=7, r_max=30.0):
    """A silica-like network (see the module's docstring); the same atoms for a given seed."""
    diamond = np.vstack([_fcc_basis(), _fcc_basis() + 0.25])  # Si sites of beta-cristobalite
    supercell = 2
    shifts = np.stack(np.meshgrid(*[np.arange(supercell)] * 3, indexing="ij"), -1).reshape(-1, 3)
    si = ((diamond[None] + shifts[:, None]) / supercell).reshape(-1, 3)  # fractional, in the supercell
    rng = np.random.default_rng(seed)
    oxygens = []
    cell = np.eye(3) * a * supercell
    for k, s in enumerate(si):  # each Si of the first diamond sublattice bonds to 4 of the second
        if (k % 8) >= 4:
            continue
        for d in np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) * 0.25 / supercell:
            mid = (s + d / 2) @ cell
            bond = d @ cell
            half = np.linalg.norm(bond) / 2
            offset = np.sqrt(max(si_o ** 2 - half ** 2, 0.0))
            perp = np.cross(bond, rng.normal(size=3))
            oxygens.append(mid + offset * perp / np.linalg.norm(perp))
    positions = np.vstack([si @ cell, np.array(oxygens)]) % (a * supercell)
    elements = ("Si",) * len(si) + ("O",) * len(oxygens)
    return Structure("SiO2_glass", elements, positions, cell=cell, sigma=sigma, growth=growth, r_max=r_max,
                     notes={"first_peak_A": si_o})

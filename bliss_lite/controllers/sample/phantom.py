"""A 3-D phantom of a few phases, made of elliptic cylinders, with exact pencil-beam path lengths.

Coordinates in mm, in the sample's frame: (u, v) horizontal, z vertical (the rotation axis is
u = v = 0). A pencil beam at lateral position x through the sample turned by omega is the line
u cos(omega) + v sin(omega) = x (the parallel-beam Radon convention), at height z. The path
length of that line through each phase is computed exactly (chord of an ellipse), so frames
are cheap to make and the ground-truth maps (`phase_map`) are exact for the reconstruction
issue to test itself against.

Three geometries, chosen in the sample's YAML (`phantom:`, `phantom_radius:`; PHANTOMS): the
demo's (`default`), `grains` and `packed`, of different shapes, sizes, densities and phases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class EllipticCylinder:
    """An elliptic cylinder: centre (u, v), semi-axes a, b (mm), turned by angle (deg), z range."""

    u: float
    v: float
    a: float
    b: float
    angle: float = 0.0
    z_min: float = -math.inf
    z_max: float = math.inf
    density: float = 1.0  # volume fraction of the phase inside

    def chord(self, x, omega_deg, z):
        """Path length (mm) of the beam line (x, omega) at height z through the cylinder."""
        x, omega, z = np.broadcast_arrays(np.asarray(x, float), np.radians(np.asarray(omega_deg, float)),
                                          np.asarray(z, float))
        direction = np.stack([-np.sin(omega), np.cos(omega)])  # along the beam, unit length
        origin = np.stack([x * np.cos(omega), x * np.sin(omega)]) - np.array([self.u, self.v]).reshape(2, *([1] * x.ndim))
        phi = math.radians(self.angle)
        rot = np.array([[math.cos(phi), math.sin(phi)], [-math.sin(phi), math.cos(phi)]])  # into the ellipse frame
        scale = np.array([self.a, self.b]).reshape(2, *([1] * x.ndim))
        o = np.tensordot(rot, origin, axes=1) / scale
        d = np.tensordot(rot, direction, axes=1) / scale
        a_, b_, c_ = (d * d).sum(0), (o * d).sum(0), (o * o).sum(0) - 1.0
        disc = b_ * b_ - a_ * c_
        length = np.where(disc > 0, 2.0 * np.sqrt(np.maximum(disc, 0.0)) / a_, 0.0)
        inside_z = (z >= self.z_min) & (z <= self.z_max)
        return self.density * length * inside_z

    def contains(self, u, v, z):
        phi = math.radians(self.angle)
        du, dv = np.asarray(u) - self.u, np.asarray(v) - self.v
        p = (du * math.cos(phi) + dv * math.sin(phi)) / self.a
        q = (-du * math.sin(phi) + dv * math.cos(phi)) / self.b
        return (p * p + q * q <= 1.0) & (np.asarray(z) >= self.z_min) & (np.asarray(z) <= self.z_max)


@dataclass(frozen=True)
class Phase:
    name: str
    shapes: tuple  # EllipticCylinders
    mu: float  # linear attenuation (1/mm)
    calibrant: str | None = None  # pyFAI calibrant name for crystalline phases; None: amorphous


class Phantom:
    """Phases and their shapes; path lengths per phase and transmission for any beam."""

    def __init__(self, phases, radius, kind=None):
        self.phases = list(phases)
        self.radius = radius  # mm: the sample fits in this cylinder around the axis
        self.kind = kind  # the name it was built by (PHANTOMS), None for one built by hand

    def scaled(self, radius):
        """The same phantom enlarged or shrunk across the beam (u, v and the semi-axes; heights
        kept) so that it fits within `radius` mm of the axis."""
        f = radius / self.radius
        phases = [replace(p, shapes=tuple(replace(s, u=s.u * f, v=s.v * f, a=s.a * f, b=s.b * f) for s in p.shapes))
                  for p in self.phases]
        return Phantom(phases, radius, self.kind)

    def describe(self):
        """JSON-able: what a scan records of the geometry (the ground truth can be rebuilt from it;
        an unbounded height is None)."""
        bound = lambda z: None if math.isinf(z) else z  # noqa: E731
        return {"kind": self.kind, "radius": self.radius, "unit": "mm",
                "shapes": [{"phase": p.name, "u": s.u, "v": s.v, "a": s.a, "b": s.b, "angle": s.angle,
                            "z_min": bound(s.z_min), "z_max": bound(s.z_max), "density": s.density}
                           for p in self.phases for s in p.shapes]}

    @property
    def names(self):
        return [p.name for p in self.phases]

    def path_lengths(self, x, omega_deg, z):
        """{phase: path length (mm)} of the beam (x, omega, z), arrays broadcast together."""
        return {p.name: sum(s.chord(x, omega_deg, z) for s in p.shapes) for p in self.phases}

    def transmission(self, lengths):
        return np.exp(-sum(p.mu * lengths[p.name] for p in self.phases))

    def phase_map(self, name, z, n=128):
        """Ground truth: the phase's volume fraction on an n x n grid of (u, v) in [-R, R] at z
        (rows along v, columns along u)."""
        phase = next(p for p in self.phases if p.name == name)
        axis = (np.arange(n) + 0.5) / n * 2 * self.radius - self.radius
        u, v = np.meshgrid(axis, axis)
        return sum(s.density * s.contains(u, v, z) for s in phase.shapes).astype(float)


def default_phantom():
    """Four crystalline phases in an amorphous matrix, within 1 mm of the axis; some phases
    only at some heights, so slices differ."""
    return Phantom([
        Phase("matrix", (EllipticCylinder(0.0, 0.0, 0.9, 0.9),), mu=0.02),
        Phase("CeO2", (EllipticCylinder(0.35, 0.2, 0.25, 0.15, angle=30),), mu=0.6, calibrant="CeO2"),
        Phase("LaB6", (EllipticCylinder(-0.4, -0.15, 0.2, 0.2, z_min=-0.5, z_max=0.3),), mu=0.4, calibrant="LaB6"),
        Phase("Si", (EllipticCylinder(-0.15, 0.5, 0.3, 0.12, angle=-20),), mu=0.03, calibrant="Si"),
        Phase("alpha_Al2O3", (EllipticCylinder(0.2, -0.5, 0.15, 0.25, z_min=-0.2),
                              EllipticCylinder(-0.55, 0.35, 0.1, 0.1)), mu=0.08, calibrant="alpha_Al2O3"),
    ], radius=1.0, kind="default")


def grains_phantom():
    """Radius 1.5 mm: an off-centre amorphous body at 0.8 density, Si at half density, three
    small CeO2 grains, a long thin LaB6 needle; no alumina."""
    return Phantom([
        Phase("matrix", (EllipticCylinder(0.2, -0.1, 1.2, 0.9, angle=15, density=0.8),), mu=0.02),
        Phase("Si", (EllipticCylinder(-0.45, 0.3, 0.45, 0.3, angle=40, density=0.5),), mu=0.03, calibrant="Si"),
        Phase("CeO2", (EllipticCylinder(0.6, 0.4, 0.15, 0.15), EllipticCylinder(0.8, -0.5, 0.2, 0.12),
                       EllipticCylinder(-0.2, -0.6, 0.12, 0.12)), mu=0.6, calibrant="CeO2"),
        Phase("LaB6", (EllipticCylinder(0.3, 0.0, 0.6, 0.08, angle=-60),), mu=0.4, calibrant="LaB6"),
    ], radius=1.5, kind="grains")


def packed_phantom():
    """Radius 0.6 mm, no amorphous phase: three crystalline phases side by side, Si in two
    densities (0.6 and 0.3)."""
    return Phantom([
        Phase("alpha_Al2O3", (EllipticCylinder(-0.2, 0.0, 0.3, 0.45),), mu=0.08, calibrant="alpha_Al2O3"),
        Phase("Si", (EllipticCylinder(0.25, 0.2, 0.2, 0.2, density=0.6),
                     EllipticCylinder(0.25, -0.3, 0.15, 0.15, density=0.3)), mu=0.03, calibrant="Si"),
        Phase("CeO2", (EllipticCylinder(0.0, 0.45, 0.1, 0.08),), mu=0.6, calibrant="CeO2"),
    ], radius=0.6, kind="packed")


PHANTOMS = {"default": default_phantom, "grains": grains_phantom, "packed": packed_phantom}


def make_phantom(kind="default", radius=None):
    """The phantom `kind` (a key of PHANTOMS), scaled to fit within `radius` mm when given."""
    if kind not in PHANTOMS:
        raise ValueError(f"phantom must be one of {', '.join(PHANTOMS)}, got {kind!r}")
    phantom = PHANTOMS[kind]()
    return phantom if radius is None else phantom.scaled(radius)

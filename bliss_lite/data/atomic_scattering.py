"""Atomic X-ray scattering factors for total scattering, from a maintained database (xraydb).

Both the simulated sample (what a phase scatters) and the PDF reduction (the composition's
<f>^2, <f^2> and Compton scattering that normalise a pattern to S(Q)) need them, so they live
in this low layer. Q is in inverse angstrom (Q = 4 pi sin(theta) / lambda) everywhere here.

Coherent: xraydb's f0 (Waasmaier & Kirfel 1995 fits, valid to sin(theta)/lambda = 6, Q = 75).
Incoherent (Compton): xraydb has no Q-dependent incoherent scattering function, so it is taken
from the same f0 by the independent-electron approximation S(Q) = Z - f0(Q)^2 / Z (0 at Q = 0,
Z at high Q); the Breit-Dirac recoil factor is left out. Nothing is typed in by hand.
"""
from __future__ import annotations

import functools
import re

import numpy as np

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


def parse_composition(composition):
    """{element: atoms per formula unit} from "SiO2", "Ce1O2" or a mapping; refuses unknown
    elements and empty compositions with a message naming `composition`."""
    if isinstance(composition, dict):
        parts = {str(k): float(v) for k, v in composition.items()}
    elif isinstance(composition, str) and composition.strip():
        text = composition.replace(" ", "")
        if _TOKEN.sub("", text):
            raise ValueError(f"composition: cannot read {composition!r} (use a formula such as 'SiO2')")
        parts = {}
        for element, count in _TOKEN.findall(text):
            parts[element] = parts.get(element, 0.0) + (float(count) if count else 1.0)
    else:
        raise ValueError(f"composition: give a chemical formula (e.g. 'SiO2') or {{element: count}}, got {composition!r}")
    if not parts or any(not v > 0 for v in parts.values()):
        raise ValueError(f"composition: counts must be > 0, got {composition!r}")
    for element in parts:
        atomic_number(element)
    return parts


@functools.lru_cache(maxsize=None)
def atomic_number(element):
    import xraydb

    try:
        return int(xraydb.atomic_number(element))
    except Exception:  # noqa: BLE001 - xraydb raises various errors for unknown names
        raise ValueError(f"composition: unknown element {element!r}") from None


def form_factor(element, q):
    """Coherent atomic form factor f0(Q) (electrons), Q in 1/A."""
    import xraydb

    q = np.asarray(q, float)
    return np.asarray(xraydb.f0(element, q / (4 * np.pi)), float).reshape(q.shape)


def compton(element, q):
    """Incoherent (Compton) scattering per atom (electron units), Q in 1/A: Z - f0^2 / Z."""
    z = atomic_number(element)
    return z - form_factor(element, q) ** 2 / z


def averages(composition, q):
    """(<f>, <f^2>, <Compton>) per atom of `composition` on Q (1/A): what normalises a total
    scattering pattern to S(Q) (Faber-Ziman)."""
    parts = parse_composition(composition)
    total = sum(parts.values())
    q = np.asarray(q, float)
    f_mean, f2_mean, c_mean = np.zeros_like(q), np.zeros_like(q), np.zeros_like(q)
    for element, count in parts.items():
        c = count / total
        f = form_factor(element, q)
        f_mean += c * f
        f2_mean += c * f * f
        c_mean += c * compton(element, q)
    return f_mean, f2_mean, c_mean

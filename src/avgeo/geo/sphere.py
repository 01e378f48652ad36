"""Great-circle geometry on the WGS84 sphere approximation, vectorised over numpy arrays.

Inputs and outputs are degrees unless a name says otherwise; distances are km.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius R1
EARTH_AREA_KM2 = 4.0 * np.pi * EARTH_RADIUS_KM**2


def _as_f64(x):
    return np.asarray(x, dtype=np.float64)


def wrap_lon(lon):
    """Longitude folded into [-180, 180)."""
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def haversine_km(lat1, lon1, lat2, lon2, radius_km: float = EARTH_RADIUS_KM):
    """Great-circle distance in km; broadcasts like numpy. Stable for tiny and antipodal."""
    p1, p2 = np.radians(_as_f64(lat1)), np.radians(_as_f64(lat2))
    dphi = p2 - p1
    dlmb = np.radians(_as_f64(lon2) - _as_f64(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2.0 * radius_km * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def to_xyz(lat, lon):
    """Unit vectors (..., 3) for lat/lon in degrees."""
    phi, lmb = np.radians(_as_f64(lat)), np.radians(_as_f64(lon))
    c = np.cos(phi)
    return np.stack([c * np.cos(lmb), c * np.sin(lmb), np.sin(phi)], axis=-1)


def from_xyz(xyz):
    """(lat, lon) in degrees from vectors (..., 3); vectors need not be unit length."""
    v = _as_f64(xyz)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def angular_distance_rad(xyz1, xyz2):
    """Angle between unit vectors, accurate at 0 and at pi (atan2 of |cross| and dot)."""
    a, b = _as_f64(xyz1), _as_f64(xyz2)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    return np.arctan2(cross, dot)


def destination(lat, lon, bearing_deg, distance_km, radius_km: float = EARTH_RADIUS_KM):
    """Point reached from (lat, lon) going `distance_km` along initial bearing (deg from N)."""
    phi1, lmb1 = np.radians(_as_f64(lat)), np.radians(_as_f64(lon))
    theta = np.radians(_as_f64(bearing_deg))
    delta = _as_f64(distance_km) / radius_km
    sin_phi2 = np.sin(phi1) * np.cos(delta) + np.cos(phi1) * np.sin(delta) * np.cos(theta)
    phi2 = np.arcsin(np.clip(sin_phi2, -1.0, 1.0))
    y = np.sin(theta) * np.sin(delta) * np.cos(phi1)
    x = np.cos(delta) - np.sin(phi1) * sin_phi2
    lmb2 = lmb1 + np.arctan2(y, x)
    return np.degrees(phi2), wrap_lon(np.degrees(lmb2))


def initial_bearing_deg(lat1, lon1, lat2, lon2):
    """Initial great-circle bearing from point 1 to point 2, degrees in [0, 360)."""
    p1, p2 = np.radians(_as_f64(lat1)), np.radians(_as_f64(lat2))
    dl = np.radians(_as_f64(lon2) - _as_f64(lon1))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arctan2(y, x)) % 360.0


def spherical_mean(lat, lon, weights=None, axis: int = -1):
    """Weighted extrinsic mean (normalised mean of unit vectors) and its resultant length.

    Returns (lat, lon, r) where r in [0, 1] is the mean resultant length (1 = all equal,
    ~0 = spread around the sphere, where the mean direction is undefined).
    """
    v = to_xyz(lat, lon)
    if weights is None:
        w = np.ones(v.shape[:-1])
    else:
        w = np.broadcast_to(_as_f64(weights), v.shape[:-1])
    m = np.sum(v * w[..., None], axis=axis - 1 if axis < 0 else axis) / np.sum(w, axis=axis)[
        ..., None
    ]
    r = np.linalg.norm(m, axis=-1)
    mlat, mlon = from_xyz(m)
    return mlat, mlon, r


def interpolate(lat1, lon1, lat2, lon2, t):
    """Point at fraction t along the shortest geodesic (slerp). Antipodes: undefined path,
    a deterministic one through the pole-ward perpendicular is returned."""
    a, b = to_xyz(lat1, lon1), to_xyz(lat2, lon2)
    t = _as_f64(t)
    omega = angular_distance_rad(a, b)
    # Antipodal inputs have no unique geodesic: pick a perpendicular direction deterministically.
    perp = b - np.sum(a * b, axis=-1, keepdims=True) * a
    norm = np.linalg.norm(perp, axis=-1, keepdims=True)
    fallback = np.cross(a, np.array([0.0, 0.0, 1.0]))
    fb_norm = np.linalg.norm(fallback, axis=-1, keepdims=True)
    fallback = np.where(fb_norm > 1e-12, fallback / np.maximum(fb_norm, 1e-300),
                        np.array([1.0, 0.0, 0.0]))
    u = np.where(norm > 1e-12, perp / np.maximum(norm, 1e-300), fallback)
    # Output broadcasts like numpy over the points and t (scalars in, scalars out).
    ang = (t * omega)[..., None]
    p = np.cos(ang) * a + np.sin(ang) * u
    return from_xyz(p)

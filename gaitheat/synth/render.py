"""Pin-hole projection and a z-buffered, Lambert-shaded capsule rasteriser (numpy only).

Capsules (a segment swept by a sphere whose radius varies linearly along it) are drawn per pixel:
each pixel inside the projected capsule gets a surface normal from its offset to the axis and a
depth from the axis depth minus the bulge towards the camera, then diffuse shading from one light.
Per-pixel shading and per-pixel depth are what let a pose model tell the near limb from the far one
(see ``shared/spec/synthetic_walkers.md``: flat colours give ~30% left/right swaps, shading ~5%).

Ground frame: x to the camera's right, y away from the camera (depth), z up, metres. The camera sits
at (0, 0, height) looking along +y with no tilt, so image rows grow downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Pin-hole camera at ``(0, 0, height)`` looking along ground +y.

    Attributes:
        focal: focal length in pixels.
        height: camera height above the ground in metres.
        size: image (H, W) in pixels; the principal point is the image centre.
    """

    focal: float
    height: float
    size: tuple[int, int]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ground-frame points.

        Args:
            points: (..., 3) ground-frame points in metres, in front of the camera (y > 0).
        Returns:
            uv (..., 2) image pixels (x = column, y = row) and depth (...,) in metres.
        """
        h, w = self.size
        depth = points[..., 1]
        u = (w - 1) / 2 + self.focal * points[..., 0] / depth
        v = (h - 1) / 2 + self.focal * (self.height - points[..., 2]) / depth
        return np.stack([u, v], axis=-1), depth


@dataclass(frozen=True)
class Capsule:
    """One body part, already in the ground frame for a single frame.

    Attributes:
        a, b: (3,) end points in metres.
        ra, rb: radii at ``a`` and ``b`` in metres.
        colour: (3,) RGB base colour in [0, 1].
    """

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float
    colour: np.ndarray


def draw_capsules(image: np.ndarray, capsules: list[Capsule], camera: Camera, light: np.ndarray,
                  ambient: float) -> np.ndarray:
    """Draw shaded capsules into ``image`` in place, nearest surface wins.

    Args:
        image: (H, W, 3) float32 RGB in [0, 1]; modified in place.
        capsules: parts in the ground frame.
        camera: the projection.
        light: (3,) unit vector towards the light in camera axes (x right, y down, z away).
        ambient: ambient share of the brightness, in [0, 1].
    Returns:
        (H, W) bool mask of the pixels covered by any capsule.
    """
    h, w = image.shape[:2]
    zbuf = np.full((h, w), np.inf, dtype=np.float32)
    for cap in capsules:
        _draw_one(image, zbuf, cap, camera, light, ambient)
    return np.isfinite(zbuf)


def _draw_one(image: np.ndarray, zbuf: np.ndarray, cap: Capsule, camera: Camera, light: np.ndarray,
              ambient: float) -> None:
    ends = np.stack([cap.a, cap.b])
    uv, depth = camera.project(ends)
    if np.any(depth <= 0.1):
        return
    radii = camera.focal * np.array([cap.ra, cap.rb]) / depth
    h, w = zbuf.shape
    x0 = int(max(np.floor(np.min(uv[:, 0] - radii)), 0))
    x1 = int(min(np.ceil(np.max(uv[:, 0] + radii)) + 1, w))
    y0 = int(max(np.floor(np.min(uv[:, 1] - radii)), 0))
    y1 = int(min(np.ceil(np.max(uv[:, 1] + radii)) + 1, h))
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = uv[1] - uv[0]
    dd = float(d @ d)
    px, py = xs - uv[0, 0], ys - uv[0, 1]
    t = np.clip((px * d[0] + py * d[1]) / dd, 0.0, 1.0) if dd > 1e-9 else np.zeros_like(px)
    ox, oy = px - t * d[0], py - t * d[1]
    r = radii[0] + t * (radii[1] - radii[0])
    q = (ox * ox + oy * oy) / np.maximum(r * r, 1e-6)
    inside = q < 1.0
    if not inside.any():
        return
    bulge = np.sqrt(np.clip(1.0 - q, 0.0, 1.0))
    world_r = cap.ra + t * (cap.rb - cap.ra)
    z = (depth[0] + t * (depth[1] - depth[0]) - world_r * bulge).astype(np.float32)
    region = zbuf[y0:y1, x0:x1]
    win = inside & (z < region)
    if not win.any():
        return
    rs = np.maximum(r, 1e-6)
    # normal: offset from the axis in the image plane, bulging towards the camera (-z)
    nx, ny, nz = ox / rs, oy / rs, -bulge
    lambert = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, None)
    shade = (ambient + (1.0 - ambient) * lambert)[win]
    region[win] = z[win]
    image[y0:y1, x0:x1][win] = shade[:, None] * cap.colour[None, :]

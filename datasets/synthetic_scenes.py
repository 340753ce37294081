"""The four synthetic categories: how a normal image looks and how each defect changes it.

A renderer takes a seeded generator and a defect name (None for a good image)
and returns ``(image, mask)``: image uint8 ``[S, S, 3]``, or ``[S, S]`` for
grey categories; mask bool ``[S, S]`` (None for good images).

The scenes are what an inspection station sees: a fixed camera and lamp, parts
in a jig or nest. Normal images vary in texture phase, pose and a little in
light, as much as such a station lets them; defects vary in kind, size (log-
uniform: most are small) and contrast, from plain to subtle, so that a working
detector scores well above chance on every category but not 1.0 on all.

The budget of normal variation is set by what the features see, and
randomly initialised backbones (the case without network) are very sensitive
to brightness: on mid grey, lifting the whole image by 1 % moves a resnet18
layer2 feature as far as a dark stain 16 px across and 10 % deep does. So the
global light varies by about 1 %, per-image texture noise stays low next to
the defects, and sizes and contrasts were tuned with the real pipeline and
random weights (PatchCore, PaDiM and SPADE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from datasets import draw
from datasets.draw import SIZE

Rendered = tuple[np.ndarray, "np.ndarray | None"]
LENS_BLUR = 0.8  # px, standard deviation of the camera's point spread
# The lamp's light field: (tilt across the image, slow blotches), as fractions.
LIGHT = (0.01, 0.005)


@dataclass(frozen=True)
class Scene:
    name: str
    kind: str  # "texture" or "object"
    defects: tuple[str, ...]
    grey: bool
    render: Callable[[np.random.Generator, "str | None"], Rendered]


def _check(defect: str | None, known: tuple[str, ...]) -> None:
    if defect is not None and defect not in known:
        raise ValueError(f"unknown defect {defect!r}; known: {known}")


def _streams(rng: np.random.Generator) -> tuple[np.random.Generator, np.random.Generator]:
    """Separate streams for the normal picture and for the defect.

    The defect's draws then leave the rest of the picture untouched: a
    defective image and the good image of the same seed differ only where the
    defect is, which is what lets the tests check the masks.
    """
    normal, flaw = rng.spawn(2)
    return normal, flaw


def _sensor(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """What the camera adds: lens blur, then noise of ``sigma`` in [0, 1] units.

    The blur (a point spread of about a pixel) softens edges the way a lens
    does, so a part lying a fraction of a pixel off does not change every edge
    pixel. The noise is one field for all channels (luma noise).
    """
    image = gaussian_filter(image, (LENS_BLUR, LENS_BLUR, 0)[: image.ndim])
    noise = np.float32(sigma) * rng.standard_normal((SIZE, SIZE), dtype=np.float32)
    return image + (noise[..., None] if image.ndim == 3 else noise)


def _size(rng: np.random.Generator, low: float, high: float) -> float:
    """A defect size in px, log-uniform: small flaws are common, large ones rare."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _inside_point(rng: np.random.Generator, margin: float) -> np.ndarray:
    return rng.uniform(margin, SIZE - margin, 2).astype(np.float32)


# ---------------------------------------------------------------- weave (texture, RGB)

WEAVE_DEFECTS = ("hole", "misweave", "stain")


def render_weave(rng: np.random.Generator, defect: str | None) -> Rendered:
    """Plain-weave fabric: threads over/under in a checkerboard, slightly warped."""
    _check(defect, WEAVE_DEFECTS)
    rng, flaw = _streams(rng)
    period = 14.5 * rng.uniform(0.99, 1.01)
    u, v = draw.local_frame(rng.uniform(0, SIZE, 2), rng.normal(0, np.deg2rad(0.7)))
    u = u + 1.5 * draw.smooth_noise(rng, 48)
    v = v + 1.5 * draw.smooth_noise(rng, 48)
    cell_u, cell_v = np.floor(u / period), np.floor(v / period)
    fu, fv = u / period - cell_u, v / period - cell_v
    warp_on_top = (cell_u + cell_v) % 2 == 0

    # Each thread is bright along its middle and dips where it goes under.
    warp = np.sin(np.pi * fu) ** 0.7 * (0.72 + 0.28 * np.sin(np.pi * fv))
    weft = np.sin(np.pi * fv) ** 0.7 * (0.72 + 0.28 * np.sin(np.pi * fu))
    shade = np.where(warp_on_top, warp, weft)

    mask = None
    if defect == "misweave":
        # A float: over a block of cells one set of threads missed the
        # interlacing and runs straight on top, flat (no dips) and loose.
        width, height = flaw.integers(1, 4), flaw.integers(2, 7)
        if flaw.random() < 0.5:
            width, height = height, width
        col, row = _inside_point(flaw, 50).astype(int)
        corner_u, corner_v = cell_u[row, col], cell_v[row, col]
        mask = (
            (cell_u >= corner_u) & (cell_u < corner_u + width)
            & (cell_v >= corner_v) & (cell_v < corner_v + height)
        )
        # Loose threads spread out and lie higher, closer to the light.
        floating = np.sin(np.pi * (fu if height > width else fv)) ** 0.35
        shade = np.where(mask, floating * flaw.uniform(1.05, 1.2), shade)
        warp_on_top = warp_on_top | mask
    base = _rgb(0.78, 0.70, 0.55) * _jitter(rng, 0.003, 3) * rng.uniform(0.995, 1.005)
    tint = np.where(warp_on_top, np.float32(1.0), np.float32(0.94))[..., None]
    image = (0.65 + 0.3 * shade)[..., None] * tint * base
    image = image * (1 + 0.05 * draw.smooth_noise(rng, 2)[..., None])
    image = image * draw.illumination(rng, *LIGHT)[..., None]

    if defect == "hole":
        # Broken threads: the dark backing shows through a frayed gap.
        alpha, mask = draw.blob(flaw, _inside_point(flaw, 30), _size(flaw, 4, 22), 1.5, 0.4)
        image = draw.mix(image, alpha * flaw.uniform(0.75, 1.0), base * 0.2)
    elif defect == "stain":
        alpha, mask = draw.blob(flaw, _inside_point(flaw, 30), _size(flaw, 8, 45), 3.0, 0.3)
        colour = _rgb(0.35, 0.25, 0.15) * _jitter(flaw, 0.2, 3)
        image = draw.mix(image, alpha * flaw.uniform(0.2, 0.7), colour)
    return draw.to_uint8(_sensor(rng, image, 0.012)), mask


# -------------------------------------------------------------- granite (texture, grey)

GRANITE_DEFECTS = ("crack", "smudge", "stain")


def render_granite(rng: np.random.Generator, defect: str | None) -> Rendered:
    """Speckled stone: grains at several scales on a slowly varying ground."""
    _check(defect, GRANITE_DEFECTS)
    rng, flaw = _streams(rng)
    ground = 0.525 + rng.uniform(-0.002, 0.002) + 0.02 * draw.smooth_noise(rng, 40)
    grains = 0.04 * draw.smooth_noise(rng, 2) + 0.035 * draw.smooth_noise(rng, 5)
    image = ground + grains + _speckles(rng, count=int(rng.integers(300, 340)))
    image = image * draw.illumination(rng, *LIGHT)

    mask = None
    if defect == "crack":
        points = draw.random_walk(flaw, _inside_point(flaw, 60), 8, flaw.uniform(6, 12), 0.45)
        alpha, mask = draw.stroke(draw.polyline_distance(points), flaw.uniform(1.5, 3.5))
        image = image * (1 - flaw.uniform(0.35, 0.7) * alpha)
    elif defect == "smudge":
        # A greasy smear: the grains are blurred away and the surface turns glossy.
        alpha, mask = draw.blob(flaw, _inside_point(flaw, 35), _size(flaw, 12, 40), 4.0, 0.25)
        sheen = flaw.uniform(0.06, 0.16)
        image = draw.mix(image, alpha, gaussian_filter(image, 3.0) + sheen)
    elif defect == "stain":
        alpha, mask = draw.blob(flaw, _inside_point(flaw, 35), _size(flaw, 8, 40), 5.0, 0.35)
        image = image + float(flaw.choice([-1, 1])) * flaw.uniform(0.1, 0.3) * alpha
    return draw.to_uint8(_sensor(rng, image, 0.01)), mask


def _speckles(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[S, S]`` scattered dark and light mineral grains, 1-2 px wide."""
    field = np.zeros((SIZE, SIZE), np.float32)
    rows, cols = rng.integers(0, SIZE, (2, count))
    field[rows, cols] = rng.choice([-1.0, 0.6], count) * rng.uniform(0.5, 1.2, count)
    return gaussian_filter(field, 0.9)


# -------------------------------------------------------------- washer (object, RGB)

WASHER_DEFECTS = ("chip", "dent", "scratch")


def render_washer(rng: np.random.Generator, defect: str | None) -> Rendered:
    """A keyed metal ring on a dark mat, shifted and turned at random."""
    _check(defect, WASHER_DEFECTS)
    rng, flaw = _streams(rng)
    center = SIZE / 2 + rng.uniform(-4, 4, 2)
    # Parts come down a chute that lets them turn only so far: the key tab
    # wanders over a quarter turn rather than the whole circle.
    turn = np.deg2rad(-90 + rng.uniform(-45, 45))
    u, v = draw.local_frame(center, turn)
    radius, theta = np.hypot(u, v), np.arctan2(v, u)
    outer = 72 + rng.normal(0, 1.2)
    inner = 31 + rng.normal(0, 0.8)
    # The key tab pointing inwards at theta = 0 makes the rotation visible.
    inner_r = inner - 7 * np.clip(6.5 - np.abs(theta) * inner, 0, 1)
    outer_r = np.full_like(radius, outer)

    mask = None
    nominal = np.minimum(outer_r - radius, radius - inner_r)
    signed = nominal
    # Deformed or broken metal along a damaged edge: coverage [S, S] and its tone.
    scar, scar_tone = np.zeros_like(radius), 0.0
    if defect == "dent":
        where = flaw.uniform(0.5, 2 * np.pi - 0.5) - np.pi
        spread = flaw.uniform(0.12, 0.3)
        bump = np.exp(-0.5 * (_angle_diff(theta, where) / spread) ** 2)
        signed = np.minimum(outer_r - flaw.uniform(5, 14) * bump - radius, radius - inner_r)
        # The pushed-in rim is crumpled: it turns from the lamp (darker) or towards it.
        scar = draw.coverage(flaw.uniform(2, 5) - signed) * (bump > 0.3) * (signed > 0)
        scar_tone = 0.58 + float(flaw.choice([-1, 1])) * flaw.uniform(0.15, 0.3)
        mask = ((signed > 0) != (nominal > 0)) | (scar >= 0.5)
    elif defect == "chip":
        where = flaw.uniform(-np.pi, np.pi)
        size = _size(flaw, 5, 20)
        bite = outer + size * flaw.uniform(0.0, 0.4)
        gap = np.hypot(u - bite * np.cos(where), v - bite * np.sin(where)) - size
        signed = np.minimum(nominal, gap)
        # The fracture face is fresh, rough metal that glints.
        scar = draw.coverage(flaw.uniform(2, 5) - gap) * (signed > 0)
        scar_tone = flaw.uniform(0.8, 0.95)
        mask = ((nominal > 0) & (signed <= 0)) | (scar >= 0.5)
    body = draw.coverage(signed)

    # The lamp is fixed (upper left) and the part turns under it, so shading
    # follows image angles, not the part's own.
    light = np.deg2rad(-135) + rng.normal(0, 0.15)
    metal = 0.58 + 0.1 * np.cos(theta + turn - light) * rng.uniform(0.95, 1.05)
    metal = metal + 0.008 * _ring_grooves(rng, radius) + 0.008 * draw.smooth_noise(rng, 2)
    rim = np.exp(-np.maximum(signed, 0) / 1.5)  # bevelled edges catch the light
    metal = (metal + 0.08 * rim)[..., None] * _rgb(0.97, 0.98, 1.0)

    mat = _rgb(0.16, 0.18, 0.22) * rng.uniform(0.96, 1.04)
    background = mat * (1 + 0.06 * draw.smooth_noise(rng, 3))[..., None]
    shadow = gaussian_filter(np.roll(body, (4, 3), axis=(0, 1)), 3)
    background = background * (1 - 0.4 * shadow)[..., None]
    metal = draw.mix(metal, scar, scar_tone)
    image = draw.mix(background, body, metal) * draw.illumination(rng, *LIGHT)[..., None]

    if defect == "scratch":
        # A point of the ring in the object frame, turned into image coordinates.
        angle = flaw.uniform(-np.pi, np.pi) + turn
        direction = np.array([np.cos(angle), np.sin(angle)], np.float32)
        start = center + flaw.uniform(inner + 10, outer - 10) * direction
        points = draw.random_walk(flaw, start, 4, flaw.uniform(8, 16), 0.15)
        alpha, line = draw.stroke(draw.polyline_distance(points), flaw.uniform(1.2, 3.0))
        alpha = alpha * (body >= 0.5)
        image = draw.mix(image, alpha * flaw.uniform(0.5, 0.9), _rgb(0.95, 0.95, 0.98))
        mask = line & (body >= 0.5)
    return draw.to_uint8(_sensor(rng, image, 0.01)), mask


def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def _ring_grooves(rng: np.random.Generator, radius: np.ndarray) -> np.ndarray:
    """Concentric machining marks: 1-D noise along the radius, ``[S, S]``."""
    profile = gaussian_filter(rng.standard_normal(SIZE), 0.8)
    profile = profile / (profile.std() + 1e-6)
    return np.interp(radius, np.arange(SIZE), profile).astype(np.float32)


# ------------------------------------------------------------- chip (object, RGB)

CHIP_DEFECTS = ("bent_pin", "missing_pin", "scratch")
PIN_ROWS, PIN_PITCH, PIN_OFFSET, PIN_HALF_W, PIN_HALF_H = 6, 14.0, 73.0, 11.0, 3.6
BODY_HALF_W, BODY_HALF_H = 62.0, 45.0
# (horizontal?, offset px, width px) of the copper traces on the board
BOARD_TRACES = (
    (True, 22.0, 3.0), (True, 200.0, 2.0), (True, 231.0, 2.0),
    (False, 14.0, 2.5), (False, 240.0, 3.5),
)
_FAR = np.float32(-1e3)  # signed distance that means "far outside"


def render_chip(rng: np.random.Generator, defect: str | None) -> Rendered:
    """A black IC package with gull-wing pins on a green board, slightly misplaced."""
    _check(defect, CHIP_DEFECTS)
    rng, flaw = _streams(rng)
    # The board sits in a jig, a few pixels off each time, and the soldered
    # chip sits on its pads to within a pixel or two and a degree.
    board_shift = rng.uniform(-3, 3, 2)
    center = SIZE / 2 + board_shift + rng.uniform(-1.5, 1.5, 2)
    u, v = draw.local_frame(center, rng.normal(0, np.deg2rad(1)))
    board = _board(rng, board_shift)

    nominal, pin_index = _pins_signed(u, v)
    pins, mask = nominal, None
    broken = int(flaw.integers(2 * PIN_ROWS))
    if defect == "missing_pin":
        pins = np.where(pin_index == broken, _FAR, nominal)
        mask = (nominal > 0) & (pin_index == broken)
    elif defect == "bent_pin":
        bent = _bent_pin_signed(flaw, u, v, broken)
        pins = np.maximum(np.where(pin_index == broken, _FAR, nominal), bent)
        mask = (pins > 0) != (nominal > 0)
    pin_cover = draw.coverage(pins)

    body_signed = draw.box_signed(u, v, BODY_HALF_W, BODY_HALF_H, 4)
    body = draw.coverage(body_signed)
    shadow = gaussian_filter(np.roll(np.maximum(body, pin_cover), (3, 3), axis=(0, 1)), 2.5)
    image = board * (1 - 0.45 * shadow)[..., None]
    tin = (0.72 + 0.08 * np.cos(u / 3.0))[..., None] * _rgb(0.9, 0.9, 0.88)
    image = draw.mix(image, pin_cover, tin)
    edge_glint = np.exp(-np.maximum(body_signed, 0) / 2)
    pin_one_dimple = draw.coverage(8 - np.hypot(u + 45, v + 28))
    plastic = 0.15 + 0.015 * draw.smooth_noise(rng, 3) + 0.03 * edge_glint - 0.04 * pin_one_dimple
    image = draw.mix(image, body, plastic[..., None] * _rgb(1.0, 1.0, 1.05))
    ink = rng.uniform(0.53, 0.57)
    image = draw.mix(image, _marking(u, v), _rgb(ink, ink, ink))
    image = image * draw.illumination(rng, *LIGHT)[..., None]

    if defect == "scratch":
        start = center + flaw.uniform(-35, 35, 2)
        points = draw.random_walk(flaw, start, 4, flaw.uniform(10, 18), 0.2)
        alpha, line = draw.stroke(draw.polyline_distance(points), flaw.uniform(1.5, 4.0))
        on_body = body_signed > 1
        image = draw.mix(image, alpha * on_body * flaw.uniform(0.5, 0.9), _rgb(0.85, 0.85, 0.85))
        mask = line & on_body
    return draw.to_uint8(_sensor(rng, image, 0.01)), mask


def _board(rng: np.random.Generator, shift: np.ndarray) -> np.ndarray:
    """``[S, S, 3]`` green solder mask with a few copper traces, moved by ``shift`` (x, y)."""
    green = _rgb(0.12, 0.36, 0.2) * _jitter(rng, 0.02, 3)
    board = green * (1 + 0.05 * draw.smooth_noise(rng, 3))[..., None]
    # Every board has the same straight traces, so each trace is a 1-D
    # profile across the image: rows for horizontal ones.
    pixels = np.arange(SIZE, dtype=np.float32)
    rows, cols = np.zeros(SIZE, np.float32), np.zeros(SIZE, np.float32)
    for horizontal, offset, width in BOARD_TRACES:
        across = pixels - (offset + shift[1] if horizontal else offset + shift[0])
        profile, _ = draw.stroke(np.abs(across), width)
        target = rows if horizontal else cols
        np.maximum(target, profile, out=target)
    traces = np.maximum(rows[:, None], cols[None, :])
    return draw.mix(board, traces * np.float32(0.6), _rgb(0.2, 0.5, 0.28))


def _pin_row_v(row) -> np.ndarray:
    return row * PIN_PITCH - PIN_PITCH * (PIN_ROWS - 1) / 2


def _pins_signed(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance ``[S, S]`` to the nearest pin, and that pin's index ``[S, S]``.

    Pins 0..5 are on the left (top to bottom), 6..11 on the right; one
    nearest-pin lookup draws all twelve at once.
    """
    row = np.clip(np.rint((v - _pin_row_v(0)) / PIN_PITCH), 0, PIN_ROWS - 1)
    index = (u > 0) * PIN_ROWS + row.astype(np.int64)
    signed = draw.box_signed(np.abs(u) - PIN_OFFSET, v - _pin_row_v(row), PIN_HALF_W, PIN_HALF_H)
    return signed, index


def _bent_pin_signed(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, pin: int
) -> np.ndarray:
    """Signed distance ``[S, S]`` of pin ``pin`` bent sideways about its root."""
    side = 1.0 if pin >= PIN_ROWS else -1.0
    root_u = side * (PIN_OFFSET - PIN_HALF_W)
    angle = float(rng.choice([-1, 1])) * np.deg2rad(rng.uniform(12, 40))
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    du, dv = u - np.float32(root_u), v - np.float32(_pin_row_v(pin % PIN_ROWS))
    bent_u, bent_v = c * du + s * dv, -s * du + c * dv
    return draw.box_signed(bent_u - side * PIN_HALF_W, bent_v, PIN_HALF_W, PIN_HALF_H)


def _marking(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Coverage ``[S, S]`` of the printed part number: two rows of blocky glyphs."""
    cover = np.zeros_like(u)
    for row_v, count in ((-6.0, 6), (11.0, 4)):
        slot = np.clip(np.rint((u + 31) / 12), 0, count - 1)
        glyph = draw.box_signed(u - (slot * 12 - 31), v - row_v, 4.2, 5.6)
        cover = np.maximum(cover, draw.coverage(glyph))
    return cover * 0.8


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], np.float32)


def _jitter(rng: np.random.Generator, spread: float, count: int) -> np.ndarray:
    """``[count]`` float32 factors in ``1 +- spread``: per-image colour variation."""
    return rng.uniform(1 - spread, 1 + spread, count).astype(np.float32)


SCENES: dict[str, Scene] = {
    scene.name: scene
    for scene in (
        Scene("weave", "texture", WEAVE_DEFECTS, False, render_weave),
        Scene("granite", "texture", GRANITE_DEFECTS, True, render_granite),
        Scene("washer", "object", WASHER_DEFECTS, False, render_washer),
        Scene("chip", "object", CHIP_DEFECTS, False, render_chip),
    )
}

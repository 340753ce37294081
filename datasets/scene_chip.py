"""The chip category (object, RGB): an IC on a board with bent pins, missing pins and scratches."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from datasets import draw
from datasets.draw import SIZE
from datasets.scene_common import (
    LIGHT, Rendered, Scene, check_defect, jitter, rgb, sensor, streams,
)

DEFECTS = ("bent_pin", "missing_pin", "scratch")
PIN_ROWS, PIN_PITCH, PIN_OFFSET, PIN_HALF_W, PIN_HALF_H = 6, 14.0, 73.0, 11.0, 3.6
BODY_HALF_W, BODY_HALF_H = 62.0, 45.0
# (horizontal?, offset px, width px) of the copper traces on the board
BOARD_TRACES = (
    (True, 22.0, 3.0), (True, 200.0, 2.0), (True, 231.0, 2.0),
    (False, 14.0, 2.5), (False, 240.0, 3.5),
)
_FAR = np.float32(-1e3)  # signed distance that means "far outside"


def render(rng: np.random.Generator, defect: str | None) -> Rendered:
    """A black IC package with gull-wing pins on a green board, slightly misplaced."""
    check_defect(defect, DEFECTS)
    rng, flaw = streams(rng)
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
    tin = (0.72 + 0.08 * np.cos(u / 3.0))[..., None] * rgb(0.9, 0.9, 0.88)
    image = draw.mix(image, pin_cover, tin)
    edge_glint = np.exp(-np.maximum(body_signed, 0) / 2)
    pin_one_dimple = draw.coverage(8 - np.hypot(u + 45, v + 28))
    plastic = 0.15 + 0.015 * draw.smooth_noise(rng, 3) + 0.03 * edge_glint - 0.04 * pin_one_dimple
    image = draw.mix(image, body, plastic[..., None] * rgb(1.0, 1.0, 1.05))
    ink = rng.uniform(0.53, 0.57)
    image = draw.mix(image, _marking(u, v), rgb(ink, ink, ink))
    image = image * draw.illumination(rng, *LIGHT)[..., None]

    if defect == "scratch":
        start = center + flaw.uniform(-35, 35, 2)
        points = draw.random_walk(flaw, start, 4, flaw.uniform(10, 18), 0.2)
        alpha, line = draw.stroke(draw.polyline_distance(points), flaw.uniform(1.5, 4.0))
        on_body = body_signed > 1
        image = draw.mix(image, alpha * on_body * flaw.uniform(0.5, 0.9), rgb(0.85, 0.85, 0.85))
        mask = line & on_body
    return draw.to_uint8(sensor(rng, image, 0.01)), mask


def _board(rng: np.random.Generator, shift: np.ndarray) -> np.ndarray:
    """``[S, S, 3]`` green solder mask with a few copper traces, moved by ``shift`` (x, y)."""
    green = rgb(0.12, 0.36, 0.2) * jitter(rng, 0.02, 3)
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
    return draw.mix(board, traces * np.float32(0.6), rgb(0.2, 0.5, 0.28))


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


SCENE = Scene("chip", "object", DEFECTS, False, render)

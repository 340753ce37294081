"""``methods.maps``'s grid operations on Paddle tensors, with the same conventions and results.

Each one builds its index or weight table with the NumPy module's own helper,
so the two cannot drift apart: bilinear is ``align_corners=False`` with edges
clamped, nearest is ``floor(dst * in / out)``. Paddle is imported on first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from methods.maps import bilinear_weights, nearest_indices

if TYPE_CHECKING:
    import paddle


def local_average_tensor(x: "paddle.Tensor") -> "paddle.Tensor":
    """3x3 average over each position of ``[N, C, h, w]``, zeros beyond the border, divided by 9.

    ``exclusive=False``: border positions are divided by 9 too, as scipy's
    ``uniform_filter(mode="constant")`` (PatchCore's ``local_average``) does.
    """
    import paddle.nn.functional as F

    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, exclusive=False)


def resize_bilinear_tensor(x: "paddle.Tensor", size: tuple[int, int]) -> "paddle.Tensor":
    """Resize the last two axes of ``[..., h, w]`` to ``[..., H, W]`` bilinearly (as ``maps.resize_bilinear``).

    The same two products with the same weight matrices as the NumPy version,
    rather than ``F.interpolate``, whose corner and clamping rules are Paddle's.
    """
    import paddle

    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    # Weights in x's own dtype, as the NumPy version: Paddle refuses float32 @ float64.
    wh = paddle.to_tensor(bilinear_weights(h, size[0]), dtype=x.dtype)
    ww = paddle.to_tensor(bilinear_weights(w, size[1]), dtype=x.dtype)
    return paddle.matmul(paddle.matmul(wh, x), ww, transpose_y=True)


def resize_nearest_tensor(x: "paddle.Tensor", size: tuple[int, int]) -> "paddle.Tensor":
    """Resize the last two axes of ``[..., h, w]`` to ``[..., H, W]`` by nearest neighbour (``maps.resize_nearest``)."""
    import paddle

    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    rows = paddle.to_tensor(nearest_indices(h, size[0]))
    cols = paddle.to_tensor(nearest_indices(w, size[1]))
    return paddle.index_select(paddle.index_select(x, rows, axis=x.ndim - 2), cols, axis=x.ndim - 1)

"""Each built-in method's embedding, built on the device from ``FeatureSet.tensor`` (the Paddle paths).

The NumPy embeddings (``patchcore.patch_embedding``, ``padim.padim_embedding``,
``spade.positions_last``) start from the host arrays; on a GPU these start from
the category's device copies, uploaded once for every method and seed, so a
method's Paddle kernels get their inputs with no host-to-device copy. Results
equal the NumPy ones to float32 rounding (``tests/test_device_features.py``).

The layer names are repeated here rather than imported from the method
modules, which import this one for their Paddle branches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from methods.base import FeatureSet
from methods.maps import nearest_indices
from methods.maps_paddle import local_average_tensor, resize_bilinear_tensor

if TYPE_CHECKING:
    import paddle

PATCHCORE_LAYERS = ("layer2", "layer3")
PADIM_LAYERS = ("layer1", "layer2", "layer3")
SPADE_POOLED = "avgpool"


def patchcore_embedding_tensor(features: FeatureSet) -> "paddle.Tensor":
    """layer2 and layer3 -> ``[N, h2, w2, C2 + C3]`` float32 locally aware patch features.

    As ``patchcore.patch_embedding``: each layer averaged over 3x3 (zero padding,
    divided by 9), layer3 resized bilinearly to layer2's grid, concatenated per position.
    """
    import paddle

    layer2 = local_average_tensor(features.tensor("layer2"))
    layer3 = resize_bilinear_tensor(local_average_tensor(features.tensor("layer3")), layer2.shape[-2:])
    return paddle.concat([layer2, layer3], axis=1).transpose([0, 2, 3, 1])


def padim_embedding_tensor(features: FeatureSet, channels: np.ndarray, rows: slice = slice(None)) -> "paddle.Tensor":
    """layer1..layer3 -> ``[N, d, r, w]`` float32: the ``channels`` (``[d]``, sorted) of their
    concatenation at ``rows`` of layer1's ``h x w`` grid (all rows by default).

    As ``padim.padim_embedding``: layer2 and layer3 resized (nearest) to layer1's
    grid. Each layer gives only its share of ``channels`` and of the rows,
    gathered before anything is concatenated, so a block of rows costs only its
    own memory. A layer none of whose channels is kept is not uploaded.
    """
    import paddle

    channels = np.asarray(channels, dtype=np.int64)
    h, w = features[PADIM_LAYERS[0]].shape[-2:]
    grid_rows = np.arange(h)[rows]
    parts, offset = [], 0
    for name in PADIM_LAYERS:
        width, layer_h, layer_w = features[name].shape[1:]
        local = channels[(channels >= offset) & (channels < offset + width)] - offset
        offset += width
        if len(local) == 0:
            continue
        part = paddle.index_select(features.tensor(name), paddle.to_tensor(local), axis=1)
        part = paddle.index_select(part, paddle.to_tensor(nearest_indices(layer_h, h)[grid_rows]), axis=2)
        parts.append(paddle.index_select(part, paddle.to_tensor(nearest_indices(layer_w, w)), axis=3))
    return paddle.concat(parts, axis=1)


def padim_samples_tensor(features: FeatureSet, channels: np.ndarray, rows: slice = slice(None)) -> "paddle.Tensor":
    """``[r*w, d, N]`` position-major, as ``padim.padim_samples``: each position's samples one matrix."""
    emb = padim_embedding_tensor(features, channels, rows)
    n, d, r, w = emb.shape
    return emb.reshape([n, d, r * w]).transpose([2, 1, 0])


def padim_positions_tensor(features: FeatureSet, channels: np.ndarray, rows: slice = slice(None)) -> "paddle.Tensor":
    """``[N, r*w, d]``, one row per position, as ``Padim._positions`` (the ``x`` of the distances)."""
    emb = padim_embedding_tensor(features, channels, rows)
    n, d, r, w = emb.shape
    return emb.reshape([n, d, r * w]).transpose([0, 2, 1])


def spade_positions_tensor(features: FeatureSet, name: str) -> "paddle.Tensor":
    """Pyramid layer ``name`` ``[N, C, h, w]`` -> ``[N, h, w, C]`` float32, as ``spade.positions_last``."""
    return features.tensor(name).transpose([0, 2, 3, 1])


def spade_queries_tensor(features: FeatureSet, name: str) -> "paddle.Tensor":
    """``[N, h*w, C]``: image ``i``'s rows ``[i]`` equal ``spade.queries(features[name][i])``."""
    positions = spade_positions_tensor(features, name)
    n, h, w, c = positions.shape
    return positions.reshape([n, h * w, c])


def spade_pooled_tensor(features: FeatureSet) -> "paddle.Tensor":
    """``[N, C4]`` float32: the global pooled vectors SPADE retrieves images by."""
    return features.tensor(SPADE_POOLED)

"""Device copies of one split's feature arrays: each uploaded once, shared by every caller, freed together.

A ``FeatureSet`` holds one ``DeviceCopies``. On a GPU every method of a
category reads the same layers; copying them from the host at each kernel call
would move the same bytes once per method and seed. Here the first caller of a
layer uploads it, later callers get the same tensor, and the harness frees them
all (``release``) when the category's methods are done.

Importing this module never imports Paddle: only a first upload does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import paddle


class DeviceCopies:
    """Paddle tensors of named host arrays, keyed by (name, device).

    ``uploads`` counts host-to-device copies made so far (tests count them);
    ``held()`` names the copies alive now. Pickling or deep-copying gives an
    empty one: device memory does not travel with the host arrays.
    """

    def __init__(self) -> None:
        self._tensors: dict[tuple[str, str], "paddle.Tensor"] = {}
        # Two threads of one worker asking for the same layer must not upload it twice.
        self._lock = threading.Lock()
        self.uploads = 0

    def get(self, name: str, array: np.ndarray) -> "paddle.Tensor":
        """``array`` as a float32 tensor on Paddle's current device, uploaded on the first call for ``name``.

        Same shape as ``array``. Every caller gets the same tensor object: it must
        not be changed in place (``add_``, ``scale_``...), as the host arrays must not.
        """
        import paddle

        key = (name, paddle.device.get_device())
        with self._lock:
            tensor = self._tensors.get(key)
            if tensor is None:
                tensor = paddle.to_tensor(np.ascontiguousarray(array, dtype=np.float32))
                tensor.stop_gradient = True
                self._tensors[key] = tensor
                self.uploads += 1
            return tensor

    def release(self) -> None:
        """Drop every device copy; Paddle frees each once no caller holds it any more."""
        with self._lock:
            self._tensors.clear()

    def held(self) -> tuple[str, ...]:
        """Names of the layers that have a device copy now, sorted (one entry per device)."""
        with self._lock:
            return tuple(sorted(name for name, _ in self._tensors))

    def __reduce__(self):
        return (DeviceCopies, ())

    def __repr__(self) -> str:
        return f"DeviceCopies(held={self.held()}, uploads={self.uploads})"

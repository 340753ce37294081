"""What a method sees (features) and what it hands back (scores and maps).

A method is a class shaped like a scikit-learn estimator: hyper-parameters in
``__init__``, ``fit`` builds state in attributes whose names end in ``_``,
``predict`` returns scores. It never touches images, masks, metrics or timing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Mapping

import numpy as np

from methods.device_copies import DeviceCopies

if TYPE_CHECKING:
    import paddle


class MethodError(Exception):
    """A method cannot work with what it was given (too few images, features of another backbone);
    the message says which flag or input to change."""


@dataclass(frozen=True)
class FeatureSet:
    """Backbone features of one split of one category.

    ``layers`` maps a layer name (``layer1``..``layer4``: ``[N, C, h, w]``;
    ``avgpool``: ``[N, C4]``, the global average pool of layer4) to a float32
    array. ``image_size`` is the ``(H, W)`` of the network input, the size
    anomaly maps are returned at. In a run the arrays are read-only: every
    method of the run is handed the same ones.

    ``tensor(name)`` is the same layer on Paddle's device, for the Paddle
    kernels: uploaded by its first caller, then shared by every method, until
    the harness calls ``release()`` after the category. ``device_copies``
    counts the uploads; it takes no part in equality, and a pickled or copied
    set arrives without device copies.
    """

    layers: Mapping[str, np.ndarray]
    image_size: tuple[int, int]
    device_copies: DeviceCopies = field(default_factory=DeviceCopies, init=False, repr=False, compare=False)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.layers[name]

    def tensor(self, name: str) -> "paddle.Tensor":
        """Layer ``name`` as a float32 Paddle tensor on the current device (``[N, C, h, w]`` or ``[N, C4]``).

        Uploaded on the first call, the same object afterwards; shared, so never change it in place.
        """
        return self.device_copies.get(name, self.layers[name])

    def release(self) -> None:
        """Free the device copies (the host arrays stay); a later ``tensor`` call uploads again."""
        self.device_copies.release()

    def __len__(self) -> int:
        return len(next(iter(self.layers.values())))


@dataclass(frozen=True)
class Prediction:
    """``scores``: ``[N]`` image anomaly scores; ``maps``: ``[N, H, W]`` pixel anomaly maps."""

    scores: np.ndarray
    maps: np.ndarray


class AnomalyMethod:
    """Base class for method plugins, handed to the harness by a ``patchbench_methods`` hook.

    A subclass sets ``name`` (unique; what ``--methods`` selects) and
    ``layers`` (the backbone layers it reads, from ``layer1``..``layer4`` and
    ``avgpool``), and implements ``fit`` and ``predict``. ``from_config``
    builds the method from the run's options (an ``argparse.Namespace`` that
    carries ``seed`` and every flag plugins added); override it to read your
    own flags.

    The rules a method follows, on which the run header, ``--save-models``
    and ``bench.py predict`` rely (``bench.models`` writes and reads models):

    - Hyper-parameters: every ``__init__`` argument is stored in an attribute
      of the same name (``get_params``), and its value is one JSON can hold:
      None, bool, int, finite float, str, or lists, tuples and string-keyed
      dicts of these (NumPy scalars are saved as the Python number they hold).
      A saved model is rebuilt as ``cls(**params)``.
    - Fitted state: ``fit`` keeps what ``predict`` needs in public attributes
      whose names end in ``_`` (``memory_bank_``), each a NumPy array (any
      dtype but ``object``: arrays are saved without pickle) or a value JSON
      can hold, as above (``grid_shape_``). A loaded model is given exactly
      these attributes back, without calling ``fit``; private attributes
      (``_cache``) are not saved, so ``predict`` must not need them. Saving
      refuses any other value in these attributes, and a method with none.
    - ``model_size_bytes`` counts the arrays of the fitted state.
    - The features given to ``fit`` and ``predict`` are read-only and shared
      by every method of the run: compute into new arrays. Their device copies
      (``features.tensor(name)``) are shared too: never change them in place.
    """

    name: ClassVar[str] = ""
    layers: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, options) -> "AnomalyMethod":
        return cls()

    def fit(self, features: FeatureSet) -> "AnomalyMethod":
        raise NotImplementedError

    def predict(self, features: FeatureSet) -> Prediction:
        raise NotImplementedError

    def get_params(self) -> dict:
        """Hyper-parameters by name: each ``__init__`` argument, read from the attribute of that name.

        The scikit-learn convention; run headers and saved models rely on it.
        Raises ``AttributeError`` naming the argument a subclass does not keep.
        """
        params = {}
        for name, parameter in list(inspect.signature(type(self).__init__).parameters.items())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                raise AttributeError(
                    f"{type(self).__module__}.{type(self).__qualname__} takes {name!r} in __init__ but keeps "
                    f"no attribute {name!r}; store each hyper-parameter under its own name"
                )
            params[name] = getattr(self, name)
        return params

    def fitted_state(self) -> dict[str, np.ndarray]:
        """Fitted arrays by name: every public attribute ending in ``_`` that is an array."""
        return {
            key: value
            for key, value in vars(self).items()
            if key.endswith("_") and not key.startswith("_") and isinstance(value, np.ndarray)
        }

    def model_size_bytes(self) -> int:
        """Bytes the fitted model keeps (memory bank, Gaussians, gallery)."""
        return int(sum(array.nbytes for array in self.fitted_state().values()))

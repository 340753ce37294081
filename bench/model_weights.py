"""The weights identity (``Backbone.weights_id``) a model records: how it is written, read back and asked for.

Three kinds: ``"imagenet"`` (Paddle's ImageNet weights), ``"random-seed<N>"``
(the seeded random initialisation) and ``"file-<sha256[:16]>"`` (a local
weights file; the model also keeps its name in ``weights_used``,
``"file:<name>"``). Reading the identity back and telling a user how to get
the same weights again happen here only: for the run's flags
(``bench.model_compat.matching_flags``) and for ``predict`` (``weights_advice``).
"""

from __future__ import annotations

import re

IMAGENET = "imagenet"
RANDOM_PREFIX = "random-seed"
FILE_PREFIX = "file-"


def random_weights_id(seed: int) -> str:
    """The identity of the random initialisation seeded with ``seed``."""
    return f"{RANDOM_PREFIX}{seed}"


def file_weights_id(sha256: str) -> str:
    """The identity of a weights file whose SHA-256 (hex) is ``sha256``."""
    return f"{FILE_PREFIX}{sha256[:16]}"


def random_seed(weights_id: str) -> int | None:
    """The seed of a ``random-seed<N>`` identity; None for any other identity."""
    found = re.fullmatch(rf"{RANDOM_PREFIX}(-?\d+)", weights_id)
    return int(found.group(1)) if found else None


def is_file_id(weights_id: str) -> bool:
    return weights_id.startswith(FILE_PREFIX)


def file_hint(header: dict) -> str:
    """Which file a ``file-`` identity stands for: ``PATH/TO/<name> (the file whose sha256 starts with ...)``."""
    name = str(header.get("weights_used", "")).removeprefix("file:") or "the weights file"
    return f"PATH/TO/{name} (the file whose sha256 starts with {header['weights_id'][len(FILE_PREFIX):]})"


def weights_flags(header: dict) -> str:
    """The run flags that give the model's weights: ``--weights random --seed 0``, ``--weights imagenet`` ..."""
    weights = header["weights_id"]
    if random_seed(weights) is not None:
        return f"--weights random --seed {weights.removeprefix(RANDOM_PREFIX)}"
    if is_file_id(weights):
        return f"--weights {file_hint(header)}"
    return f"--weights {weights}"


def weights_advice(header: dict) -> str:
    """How to give ``predict`` the weights the model was fitted with."""
    saved = header["weights_id"]
    if is_file_id(saved):
        return f"pass --weights {file_hint(header)}"
    if saved == IMAGENET:
        return (f"leave --weights out or pass --weights imagenet; offline, pass --weights the path of "
                f"Paddle's ImageNet {header['backbone']}.pdparams (its md5 is checked)")
    return "leave --weights out (or pass --weights random): the model's random weights come from its seed"

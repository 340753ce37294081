"""Which features a saved model accepts: refuse others, and say which settings give the right ones.

A model's scores mean something only on features like the ones it was fitted
on: the same backbone, weights (``bench.model_weights``), resize and crop as
its header (``bench.models``) records.
"""

from __future__ import annotations

from bench.errors import PatchbenchError
from bench.model_weights import weights_flags


def check_compatible(header: dict, *, backbone: str, weights_id: str, resize: int, crop: int,
                     fix: str | None = None) -> None:
    """Refuse features from other settings than the model was fitted with.

    ``fix`` replaces the default advice (the run's flags that match the model),
    for callers with other flags.
    """
    saved = {"backbone": header["backbone"], "weights": header["weights_id"],
             "resize": header["resize"], "crop": header["crop"]}
    given = {"backbone": backbone, "weights": weights_id, "resize": resize, "crop": crop}
    differing = [key for key in saved if saved[key] != given[key]]
    if not differing:
        return
    model = header.get("path", "(unsaved header)")

    def described(settings: dict) -> str:
        return ", ".join(f"{key} {settings[key]}" for key in differing)

    raise PatchbenchError(
        f"model {model} was fitted on features from {described(saved)}, but is given "
        f"{described(given)}; its scores mean nothing on other features. "
        f"{fix or 'Use the settings of the model: ' + matching_flags(header)}"
    )


def matching_flags(header: dict) -> str:
    """The run flags that reproduce the model's features, e.g. ``--backbone resnet18 --weights random --seed 0``."""
    return (f"--backbone {header['backbone']} {weights_flags(header)} "
            f"--resize {header['resize']} --crop {header['crop']}")

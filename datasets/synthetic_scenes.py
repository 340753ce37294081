"""The synthetic categories by name: one ``scene_<name>`` module each, what they share in ``scene_common``.

A scene's renderer takes a seeded generator and a defect name (None for a good
image) and returns ``(image, mask)``: image uint8 ``[S, S, 3]``, or ``[S, S]``
for grey categories; mask bool ``[S, S]`` (None for good images).
"""

from __future__ import annotations

from datasets import scene_chip, scene_granite, scene_washer, scene_weave
from datasets.scene_common import Scene

SCENES: dict[str, Scene] = {
    scene.SCENE.name: scene.SCENE for scene in (scene_weave, scene_granite, scene_washer, scene_chip)
}

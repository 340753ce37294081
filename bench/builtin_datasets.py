"""The data sets that ship with patchbench, handed to the harness through the same hook as an outside plugin's.

The classes live in ``datasets/``, which imports neither pluggy nor the
harness; this module is their plugin.
"""

from __future__ import annotations

from bench import hookimpl
from datasets.base import Dataset
from datasets.btad import BTAD
from datasets.folder import Folder
from datasets.mpdd import MPDD
from datasets.mvtec_ad import MVTecAD
from datasets.mvtec_ad2 import MVTecAD2
from datasets.mvtec_loco import MVTecLOCO
from datasets.visa import VisA


@hookimpl
def patchbench_datasets() -> list[type[Dataset]]:
    return [MVTecAD, MVTecAD2, VisA, MVTecLOCO, BTAD, MPDD, Folder]

"""Read images and masks into the arrays a backbone and the metrics expect.

Images: any Pillow mode -> 8-bit RGB -> bilinear resize to ``resize x resize``
-> center crop ``crop x crop`` -> ImageNet normalisation -> ``[3, crop, crop]``.
Masks: nearest resize and the same crop, so a mask pixel stays on its image pixel.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
from PIL import Image

from datasets.base import list_images
from datasets.errors import DatasetError
from datasets.mvtec import Sample

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# Pillow's modes for 16-bit grey; "I" is what older Pillows give for 16-bit PNGs.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

MaskItem = Union[Sample, Path, str, None]
LOSSY_SUFFIXES = frozenset({".jpg", ".jpeg"})


def read_images(
    paths: Sequence[Path | str], resize: int = 256, crop: int = 224, workers: int | None = None
) -> np.ndarray:
    """Decode, resize, crop and normalise images in parallel.

    Returns ``[N, 3, crop, crop]`` float32, ImageNet-normalised, in the order of ``paths``.
    """
    _check_sizes(resize, crop)
    out = np.empty((len(paths), 3, crop, crop), dtype=np.float32)

    def fill(index: int) -> None:
        out[index] = read_image(paths[index], resize, crop)

    run_parallel(fill, len(paths), workers)
    return out


def read_image(path: Path | str, resize: int = 256, crop: int = 224) -> np.ndarray:
    """One image as ``[3, crop, crop]`` float32, ImageNet-normalised."""
    image = resize_crop(load_rgb(path), resize, crop, Image.BILINEAR)
    return normalize(np.asarray(image))


def load_rgb(path: Path | str) -> Image.Image:
    """Fully decode ``path`` as 8-bit RGB; any decoding problem is a DatasetError."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Truncated or garbage files surface as OSError/SyntaxError from the decoder.
        raise DatasetError(
            f"cannot read image {path}: {error}; replace or remove the file"
        ) from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB (alpha dropped, 16-bit scaled, not clipped)."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        return Image.fromarray(high_depth_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.mode == "RGB":
        return image.copy()
    return image.convert("RGB")


def high_depth_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """``[H, W]`` 16-bit (or float) grey -> ``[H, W]`` uint8, full range to full range.

    65535 / 257 == 255 exactly, so dividing by 257 maps 16-bit white to 8-bit white
    where a cast would wrap and a clip would saturate everything above 255.
    """
    values = array.astype(np.float64)
    if mode == "F":
        # Float images have no declared range; [0, 1] is the usual convention.
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        values = values * scale
    else:
        values = values / 257.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def resize_crop(image: Image.Image, resize: int, crop: int, resample: int) -> Image.Image:
    """Resize to ``resize x resize`` then take the centred ``crop x crop`` window."""
    if image.size != (resize, resize):
        image = image.resize((resize, resize), resample=resample)
    # Same offset rounding as torchvision's CenterCrop, so crops line up with theirs.
    offset = int(round((resize - crop) / 2.0))
    return image.crop((offset, offset, offset + crop, offset + crop))


def normalize(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float32 ``(x / 255 - mean) / std``."""
    scaled = rgb.astype(np.float32) / np.float32(255.0)
    normalised = (scaled - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def read_masks(
    items: Sequence[MaskItem], resize: int = 256, crop: int = 224, workers: int | None = None
) -> np.ndarray:
    """Binary masks as ``[N, crop, crop]`` uint8 in {0, 1}.

    Each item is a mask path, None (a good image: all zero), or a ``Sample``.
    For a ``Sample`` with a mask, the mask must have its image's size; only the
    headers are read for that check.
    """
    _check_sizes(resize, crop)
    out = np.zeros((len(items), crop, crop), dtype=np.uint8)

    def fill(index: int) -> None:
        mask_path = _mask_path(items[index])
        if mask_path is not None:
            out[index] = read_mask(mask_path, resize, crop)

    run_parallel(fill, len(items), workers)
    return out


def _mask_path(item: MaskItem) -> Path | None:
    if isinstance(item, Sample):
        if item.mask_path is not None:
            check_mask_size(item.mask_path, item.image_path)
        return item.mask_path
    return None if item is None else Path(item)


def read_mask(path: Path | str, resize: int = 256, crop: int = 224) -> np.ndarray:
    """One mask as ``[crop, crop]`` uint8; any nonzero pixel (any channel) is defect.

    A folder (MVTec LOCO: one file per defect region) gives the union of its image files.
    """
    if Path(path).is_dir():
        # Nearest resizing picks pixels, so the union of resized files is the resized union.
        return np.bitwise_or.reduce([read_mask(file, resize, crop) for file in mask_files(path)])
    try:
        with Image.open(path) as image:
            image.load()
            binary = mask_to_binary(image, lossy=Path(path).suffix.lower() in LOSSY_SUFFIXES)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(
            f"cannot read mask {path}: {error}; replace or remove the file"
        ) from error
    as_image = Image.fromarray(binary * np.uint8(255))
    return (np.asarray(resize_crop(as_image, resize, crop, Image.NEAREST)) > 0).astype(np.uint8)


def mask_to_binary(image: Image.Image, lossy: bool = False) -> np.ndarray:
    """Any Pillow mode -> ``[H, W]`` uint8 in {0, 1}: any non-zero pixel is defect, or with ``lossy``
    (a JPEG mask, whose compression leaves faint non-zero rings round every edge) any above half range."""
    if image.mode in ("P", "PA"):
        # Palette index 0 need not be black; judge the colours, not the indices.
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 3:
        array = (array[..., :3] if array.shape[-1] >= 3 else array[..., :1]).max(axis=-1)
    return (array > (127 if lossy else 0)).astype(np.uint8)


def mask_files(folder: Path | str) -> list[Path]:
    """The image files of a mask folder, sorted; a ``DatasetError`` if it has none."""
    files = list_images(Path(folder))
    if not files:
        raise DatasetError(f"mask folder {folder} has no mask images (one file per defect region, "
                           f"e.g. 000.png); restore them or move the image out of the test folder")
    return files


def check_mask_size(mask_path: Path | str, image_path: Path | str) -> None:
    """Raise unless mask and image have the same (width, height); reads headers only.
    A mask folder: every file in it."""
    if Path(mask_path).is_dir():
        for file in mask_files(mask_path):
            check_mask_size(file, image_path)
        return
    mask_size, image_size = _header_size(mask_path), _header_size(image_path)
    if mask_size != image_size:
        raise DatasetError(
            f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} but its image {image_path} "
            f"is {image_size[0]}x{image_size[1]}; a mask must have its image's size, "
            f"replace the mask"
        )


def _header_size(path: Path | str) -> tuple[int, int]:
    try:
        with Image.open(path) as image:  # lazy: parses the header, not the pixels
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(
            f"cannot read image {path}: {error}; replace or remove the file"
        ) from error


def _check_sizes(resize: int, crop: int) -> None:
    if not 0 < crop <= resize:
        raise ValueError(f"need 0 < crop <= resize, got crop={crop}, resize={resize}")


def run_parallel(job: Callable[[int], None], count: int, workers: int | None) -> None:
    """Run ``job(i)`` for ``i < count`` on a thread pool; the first error is re-raised.

    Threads, not processes: Pillow releases the GIL while decoding and resizing,
    and the workers write straight into one preallocated array.
    """
    if count == 0:
        return
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1:
        for index in range(count):
            job(index)
        return
    with ThreadPoolExecutor(max_workers=min(workers, count)) as pool:
        for _ in pool.map(job, range(count)):
            pass

"""Paddle ResNet feature extraction (resnet18, wide_resnet50_2) for patch methods.

The trunk (stem + stages up to the deepest requested layer) is traced once with
``paddle.jit.to_static``, saved, and run through a ``paddle.inference``
predictor: oneDNN on CPU (about 5x faster than eager Paddle), CUDA on GPU.
Eager Paddle only builds and traces the model, and is the reference in tests.

Feature shapes for an ``[N, 3, H, W]`` input (every stride-2 step maps a size
``n`` to ``ceil(n / 2)``)::

    layer1  [N, C1, H/4,  W/4]      resnet18: C = 64, 128, 256, 512
    layer2  [N, C2, H/8,  W/8]      wide_resnet50_2: C = 256, 512, 1024, 2048
    layer3  [N, C3, H/16, W/16]
    layer4  [N, C4, H/32, W/32]
    avgpool [N, C4] global mean of layer4, as the network defines it, whatever
                    else is requested (so a method's inputs never depend on
                    which other methods share the extraction)

Saved inference models persist in ``<cache root>/models`` (``datasets.cache_root``),
one folder per (backbone, weights, layers, image size, trunk version, Paddle
version): a later process loads the predictor from there without building the
eager network, loading weights or tracing. A saved model that Paddle cannot
load is reported, deleted and traced again.

Paddle itself is imported only when something needs it (building, loading or
running a model, downloading weights, counting GPUs of a CUDA build): a run
whose features all come from the feature cache never imports it.

Call ``bench.threads.configure_cpu_env()`` before anything imports paddle; this
module does it itself when it is imported first.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import sys
import tempfile
import urllib.parse
import urllib.request
from typing import Callable, Iterable

import numpy as np

from bench.errors import PatchbenchError
from bench.filehash import file_sha256
from bench.log import logger
from bench.model_weights import file_weights_id, random_weights_id
from methods.paddle_build import compiled_with_cuda
from bench.paddle_import import paddle as _paddle
from bench.quiet_stderr import drop_lines
from bench.saved_model import remove_model, saved_model_problem, write_sizes
from bench.threads import configure_cpu_env, cpu_count
from bench.trunk import STAGES, on_cpu, trunk_class
from datasets.cache_root import cache_root

if "paddle" not in sys.modules:
    configure_cpu_env()

# Printed by Paddle's C++ while tracing any model; it concerns an op argument the trunk never uses.
TRACING_NOISE = "Paddle static graph(PIR) not support input out tensor"

LAYERS = STAGES + ("avgpool",)
CHANNELS = {
    "resnet18": dict(zip(STAGES, (64, 128, 256, 512))),
    "wide_resnet50_2": dict(zip(STAGES, (256, 512, 1024, 2048))),
}
CONNECT_TIMEOUT_S = 5.0
# Part of a traced model's cache key: bump when _Trunk computes something else for the same
# layer names (2: avgpool pools layer4, not the deepest stage requested), or saves it otherwise
# (3: with sizes.json, so that models saved before are traced again, not reported as damaged).
TRUNK_VERSION = 3


def feature_shape(name: str, layer: str, image_size: tuple[int, int]) -> tuple[int, ...]:
    """Shape of one image's feature (no batch dim): ``(C, h, w)``, or ``(C4,)`` for avgpool."""
    stage = "layer4" if layer == "avgpool" else layer
    channels = CHANNELS[name][stage]
    if layer == "avgpool":
        return (channels,)
    halvings = 2 + STAGES.index(stage)  # conv1, maxpool, then layer2..4 each stride 2
    h, w = image_size
    for _ in range(halvings):
        h, w = (h + 1) // 2, (w + 1) // 2
    return (channels, h, w)


class Backbone:
    """A ResNet trunk that turns images into features, on the fast inference path.

    Args:
        name: ``"resnet18"`` or ``"wide_resnet50_2"``.
        weights: ``"imagenet"`` (Paddle's download and cache; if that fails, a
            warning on stderr and a seeded random initialisation), ``"random"``,
            or the path of a local ``.pdparams`` state dict.
        seed: seeds the random initialisation (same seed, same weights, on any device).
        device: ``"auto"`` (GPU if Paddle has CUDA and one is present), ``"cpu"``, ``"gpu"``.
        cache_dir: where traced models are saved and found again; default
            ``<cache root>/models`` (``$PATCHBENCH_CACHE/models``, else ``~/.cache/patchbench/models``).

    Attributes:
        weights_used: ``"imagenet"``, ``"random"`` or ``"file:<file name>"``.
        weights_id: identity of the weights for cache keys: ``"imagenet"``,
            ``"random-seed<seed>"`` or ``"file-<sha256[:16]>"``.
        device: ``"cpu"`` or ``"gpu"``.

    Not thread-safe: use one Backbone per thread.
    """

    def __init__(
        self,
        name: str = "resnet18",
        weights: str | os.PathLike = "imagenet",
        seed: int = 0,
        device: str = "auto",
        cache_dir: str | os.PathLike | None = None,
    ):
        if name not in CHANNELS:
            raise PatchbenchError(f"unknown backbone {name!r}; choose one of {', '.join(CHANNELS)}")
        self.name = name
        self.seed = int(seed)
        self.device = _resolve_device(device)
        self._weights_file: str | None = None
        self._imagenet_checked = False  # Paddle's download has verified the file (md5)
        self._net = None
        self._predictors: dict = {}
        self.cache_dir = os.fspath(cache_dir if cache_dir is not None else cache_root() / "models")

        if weights == "imagenet":
            try:
                # Already in Paddle's weights cache: known without importing Paddle; its md5 is
                # checked by Paddle's download when the network is built (_build_net).
                self._weights_file = _cached_imagenet_file(name)
                if self._weights_file is None:
                    self._weights_file = _imagenet_file(name)
                    self._imagenet_checked = True
                self.weights_used, self.weights_id = "imagenet", "imagenet"
            except Exception as error:  # no network, proxy, HTTP error, bad md5 ...
                _warn_random_fallback(name, self.seed, error)
                weights = "random"
        if weights == "random":
            self.weights_used, self.weights_id = "random", random_weights_id(self.seed)
        elif weights != "imagenet":
            path = os.fspath(weights)
            if not os.path.isfile(path):
                raise PatchbenchError(
                    f"weights file {path} does not exist; pass --weights the path of a "
                    f"{name} .pdparams, or --weights imagenet"
                )
            self._weights_file = path
            self.weights_used = f"file:{os.path.basename(path)}"
            self.weights_id = file_weights_id(file_sha256(path))
            if not self._has_saved_models():
                # Load now: a bad file fails before any data is read. A model saved from a file with
                # this SHA-256 proves these very bytes loaded before, so then nothing is loaded at all.
                self._net = self._build_net()

    def extract(
        self,
        images: np.ndarray,
        layers: Iterable[str],
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Features of ``images`` (``[N, 3, H, W]`` float32, already normalised).

        Returns ``{layer: [N, C, h, w] float32}`` (``avgpool``: ``[N, C]``) for each
        requested layer. ``progress(done, total)`` is called after every batch.
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {images.shape}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = _canonical_layers(layers)
        n, _, height, width = images.shape
        # NaN until written: a row the loop never reached cannot pass for a feature.
        result = {
            layer: np.full((n,) + feature_shape(self.name, layer, (height, width)), np.nan, np.float32)
            for layer in order
        }
        if n == 0:
            return result
        predictor = self._predictor(order, height, width)
        source = predictor.get_input_handle(predictor.get_input_names()[0])
        sinks = [predictor.get_output_handle(out) for out in predictor.get_output_names()]
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size]
            source.reshape(list(batch.shape))
            source.copy_from_cpu(batch)
            predictor.run()
            for layer, sink in zip(order, sinks):
                result[layer][start : start + len(batch)] = sink.copy_to_cpu()
            if progress is not None:
                progress(start + len(batch), n)
        return result

    def trunk(self, layers: Iterable[str]):
        """The eager Paddle trunk (a ``paddle.nn.Layer``) in eval mode: ``forward(x)`` returns one
        tensor per layer, in canonical order (layer1..layer4, avgpool). Reference for tests."""
        return trunk_class()(self._model(), _canonical_layers(layers))

    # -- internals -----------------------------------------------------------

    def _model(self):
        if self._net is None:
            self._net = self._build_net()
        return self._net

    def _build_net(self):
        paddle = _paddle()
        if self.weights_id == "imagenet" and not self._imagenet_checked:
            try:
                self._weights_file = _imagenet_file(self.name)
            except Exception as error:  # noqa: BLE001 - the cached file failed Paddle's md5 and cannot be had again
                raise PatchbenchError(
                    f"ImageNet weights for {self.name} in Paddle's cache fail its check and cannot be "
                    f"downloaded again ({error}); delete {self._weights_file} or pass --weights PATH"
                ) from error
            self._imagenet_checked = True
        with on_cpu(self.seed):
            net = getattr(paddle.vision.models, self.name)(num_classes=-1)  # no fc
        if self._weights_file is not None:
            _load_weights(net, self._weights_file, self.name)
        net.eval()  # BatchNorm uses its running statistics
        return net

    def _model_prefix(self) -> str:
        """Start of this backbone's saved-model folder names: ``<name>_<weights id>_``."""
        return f"{self.name}_{self.weights_id}_"

    def _has_saved_models(self) -> bool:
        return bool(glob.glob(os.path.join(glob.escape(self.cache_dir), glob.escape(self._model_prefix()) + "*")))

    def _predictor(self, layers: tuple[str, ...], height: int, width: int):
        key = (layers, height, width)
        if key not in self._predictors:
            with drop_lines(TRACING_NOISE):
                self._predictors[key] = self._create_predictor(layers, height, width)
        return self._predictors[key]

    def _create_predictor(self, layers: tuple[str, ...], height: int, width: int):
        folder = self._saved_model(layers, height, width)
        try:
            return self._load_predictor(folder)
        except Exception as error:  # noqa: BLE001 - whatever Paddle raises for a damaged file
            logger.warning("warning: saved inference model %s cannot be loaded (%s); tracing it again",
                           folder, " ".join(str(error).split())[:300] or type(error).__name__)
            remove_model(folder)
        folder = self._saved_model(layers, height, width)
        try:
            return self._load_predictor(folder)
        except Exception as error:  # noqa: BLE001 - traced afresh: the device's or Paddle's fault, not the file's
            raise PatchbenchError(f"the {self.name} model traced again into {folder} cannot be loaded either: "
                                  f"{error}; check --device ({self.device}) and the Paddle installation") from error

    def _load_predictor(self, folder: str):
        paddle = _paddle()
        problem = saved_model_problem(folder)
        if problem:
            raise ValueError(problem)  # before Paddle sees it: a missing file can abort its C++
        prefix = os.path.join(folder, "model")
        model_file = prefix + (".json" if os.path.exists(prefix + ".json") else ".pdmodel")
        config = paddle.inference.Config(model_file, prefix + ".pdiparams")
        if self.device == "gpu":
            config.enable_use_gpu(256, 0)  # initial memory pool in MB, device id
        else:
            config.disable_gpu()
            config.enable_mkldnn()
            config.set_cpu_math_library_num_threads(cpu_count())
        config.disable_glog_info()
        return paddle.inference.create_predictor(config)

    def _saved_model(self, layers: tuple[str, ...], height: int, width: int) -> str:
        """Folder of the traced trunk, tracing and saving it first if it is not cached.

        Saved into a temporary sibling directory, its file sizes recorded last,
        then renamed, so a directory under its final name is complete, even with
        concurrent runs; ``saved_model_problem`` tells a damaged one.
        """
        paddle = _paddle()
        key = (f"{self._model_prefix()}{'-'.join(layers)}_{height}x{width}"
               f"_trunk{TRUNK_VERSION}_paddle{paddle.__version__}")
        final = os.path.join(self.cache_dir, key)
        if not os.path.isdir(final):
            os.makedirs(self.cache_dir, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".{key}.", dir=self.cache_dir)
            try:
                with on_cpu():
                    spec = paddle.static.InputSpec([None, 3, height, width], "float32", "images")
                    static = paddle.jit.to_static(self.trunk(layers), input_spec=[spec], full_graph=True)
                    paddle.jit.save(static, os.path.join(staging, "model"))
                write_sizes(staging)
                with contextlib.suppress(OSError):  # lost a race: the winner's copy is identical
                    os.rename(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return final


def _canonical_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Requested layer names, deduplicated, shallow to deep (avgpool last)."""
    requested = [layers] if isinstance(layers, str) else list(layers)
    unknown = [layer for layer in requested if layer not in LAYERS]
    if unknown:
        raise PatchbenchError(f"unknown layer {unknown[0]!r}; choose from {', '.join(LAYERS)}")
    return tuple(layer for layer in LAYERS if layer in requested)


def _resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "gpu"):
        raise PatchbenchError(f"unknown device {device!r}; choose auto, cpu or gpu")
    if device == "cpu":
        return device
    cuda = compiled_with_cuda()
    if cuda is None:  # the build flags did not say: ask Paddle itself
        cuda = bool(_paddle().device.is_compiled_with_cuda())
    has_gpu = cuda and _paddle().device.cuda.device_count() > 0
    if device == "auto":
        return "gpu" if has_gpu else "cpu"
    if not has_gpu:
        raise PatchbenchError(
            "--device gpu, but this Paddle has no usable GPU "
            f"(compiled with CUDA: {cuda}); install paddlepaddle-gpu or use --device cpu"
        )
    return device


def _cached_imagenet_file(name: str) -> str | None:
    """``<Paddle's weights cache>/<name>.pdparams`` if it is there (Paddle names the files so), else None.

    Paddle's own ``WEIGHTS_HOME`` when it is imported (tests point it elsewhere), else its default.
    """
    download = sys.modules.get("paddle.utils.download")
    home = getattr(download, "WEIGHTS_HOME", None) or os.path.expanduser("~/.cache/paddle/hapi/weights")
    path = os.path.join(home, f"{name}.pdparams")
    return path if os.path.isfile(path) else None


def _imagenet_file(name: str) -> str:
    """Local path of Paddle's ImageNet ``.pdparams`` for ``name``, downloaded if needed.

    Paddle's downloader has no timeout and retries; when the file is not cached we
    first check, in a few seconds, that the host (or the https proxy) answers.
    """
    _paddle()
    from paddle.utils import download
    from paddle.vision.models.resnet import model_urls

    url, md5 = model_urls[name]
    if not os.path.exists(os.path.join(download.WEIGHTS_HOME, os.path.basename(url))):
        target = urllib.parse.urlsplit(urllib.request.getproxies().get("https") or url)
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            socket.create_connection((target.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise OSError(f"cannot reach {target.hostname}:{port}: {error}") from error
    return download.get_weights_path_from_url(url, md5)


def _warn_random_fallback(name: str, seed: int, error: Exception) -> None:
    _paddle()
    from paddle.utils import download
    from paddle.vision.models.resnet import model_urls

    reason = " ".join(str(error).split()) or type(error).__name__
    logger.warning(
        f"WARNING: ImageNet weights for {name} could not be had ({reason}); features come from a "
        f"random initialisation (seed {seed}), so numbers are NOT comparable with papers. "
        f"Fix: download {model_urls[name][0]} and pass --weights PATH/TO/{name}.pdparams "
        f"(or put it in {download.WEIGHTS_HOME})"
    )


def _load_weights(net, path: str, name: str) -> None:
    """Load a ``.pdparams`` state dict into ``net`` (a ``paddle.nn.Layer``); extra keys (fc.*) are ignored."""
    paddle = _paddle()
    hint = f"pass --weights a state dict of paddle.vision.models.{name} saved with paddle.save"
    try:
        state = paddle.load(path)
    except Exception as error:
        raise PatchbenchError(f"cannot read weights file {path} ({error}); {hint}") from error
    if not isinstance(state, dict):
        raise PatchbenchError(f"weights file {path} holds a {type(state).__name__}, not a state dict; {hint}")
    expected = net.state_dict()
    missing = [key for key in expected if key not in state]
    wrong = [
        f"{key} {list(state[key].shape)} vs {list(value.shape)}"
        for key, value in expected.items()
        if key in state and list(state[key].shape) != list(value.shape)
    ]
    if missing or wrong:
        raise PatchbenchError(
            f"weights file {path} does not fit {name}: {len(missing)} missing keys "
            f"{missing[:3]}, {len(wrong)} wrong shapes {wrong[:3]}; {hint}"
        )
    net.set_state_dict({key: state[key] for key in expected})

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

Call ``bench.threads.configure_cpu_env()`` before anything imports paddle; this
module does it itself when it is the first to import paddle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import urllib.parse
import urllib.request
import warnings
import weakref
from typing import Callable, Iterable

import numpy as np

from bench.errors import PatchbenchError
from bench.filehash import file_sha256
from bench.log import logger
from bench.model_weights import file_weights_id, random_weights_id
from bench.quiet_stderr import drop_lines
from bench.threads import configure_cpu_env, cpu_count
from datasets.cache_root import configured_cache_root

if "paddle" not in sys.modules:
    configure_cpu_env()

# Paddle warns at import that ccache (for compiling C++ extensions, which we never do) is missing,
# and that OMP_NUM_THREADS is not 1, which configure_cpu_env chose on purpose.
with warnings.catch_warnings(), drop_lines("OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY"):
    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle  # noqa: E402  (after configure_cpu_env on purpose)
    import paddle.inference  # noqa: E402

# Printed by Paddle's C++ while tracing any model; it concerns an op argument the trunk never uses.
TRACING_NOISE = "Paddle static graph(PIR) not support input out tensor"

STAGES = ("layer1", "layer2", "layer3", "layer4")
LAYERS = STAGES + ("avgpool",)
CHANNELS = {
    "resnet18": dict(zip(STAGES, (64, 128, 256, 512))),
    "wide_resnet50_2": dict(zip(STAGES, (256, 512, 1024, 2048))),
}
CONNECT_TIMEOUT_S = 5.0
# Part of a traced model's cache key: bump when _Trunk computes something else for the same
# layer names (2: avgpool pools layer4, not the deepest stage requested).
TRUNK_VERSION = 2


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


class _Trunk(paddle.nn.Layer):
    """ResNet stem and stages up to the deepest of ``layers`` (canonical order; avgpool needs layer4).

    ``forward(x [N, 3, H, W])`` returns a tuple with one tensor per layer, in order.
    """

    def __init__(self, net: paddle.nn.Layer, layers: tuple[str, ...]):
        super().__init__()
        self.layers = layers
        deepest = max(STAGES.index("layer4" if layer == "avgpool" else layer) for layer in layers)
        self.stem = paddle.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = paddle.nn.LayerList([getattr(net, s) for s in STAGES[: deepest + 1]])

    def forward(self, x):
        x = self.stem(x)
        outputs = []
        for name, stage in zip(STAGES, self.stages):
            x = stage(x)
            if name in self.layers:
                outputs.append(x)
        if "avgpool" in self.layers:
            # adaptive_avg_pool2d, not mean(): same numbers, but Paddle's oneDNN
            # reduce_mean check prints a stray line to stdout.
            outputs.append(paddle.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))
        return tuple(outputs)


class Backbone:
    """A ResNet trunk that turns images into features, on the fast inference path.

    Args:
        name: ``"resnet18"`` or ``"wide_resnet50_2"``.
        weights: ``"imagenet"`` (Paddle's download and cache; if that fails, a
            warning on stderr and a seeded random initialisation), ``"random"``,
            or the path of a local ``.pdparams`` state dict.
        seed: seeds the random initialisation (same seed, same weights, on any device).
        device: ``"auto"`` (GPU if Paddle has CUDA and one is present), ``"cpu"``, ``"gpu"``.
        cache_dir: where traced models are saved; default ``$PATCHBENCH_CACHE/models``,
            or a temporary directory removed with this object when that is unset.

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
        self._net: paddle.nn.Layer | None = None
        self._predictors: dict = {}

        if weights == "imagenet":
            try:
                self._weights_file = _imagenet_file(name)
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
            self._net = self._build_net()  # load now: a bad file fails before any data is read

        if cache_dir is None and (cache := configured_cache_root()) is not None:
            cache_dir = cache / "models"
        if cache_dir is None:
            cache_dir = tempfile.mkdtemp(prefix="patchbench-models-")
            weakref.finalize(self, shutil.rmtree, cache_dir, True)
        self.cache_dir = os.fspath(cache_dir)

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

    def trunk(self, layers: Iterable[str]) -> paddle.nn.Layer:
        """The eager Paddle trunk in eval mode: ``forward(x)`` returns one tensor per
        layer, in canonical order (layer1..layer4, avgpool). Reference for tests."""
        return _Trunk(self._model(), _canonical_layers(layers))

    # -- internals -----------------------------------------------------------

    def _model(self) -> paddle.nn.Layer:
        if self._net is None:
            self._net = self._build_net()
        return self._net

    def _build_net(self) -> paddle.nn.Layer:
        with _on_cpu(self.seed):
            net = getattr(paddle.vision.models, self.name)(num_classes=-1)  # no fc
        if self._weights_file is not None:
            _load_weights(net, self._weights_file, self.name)
        net.eval()  # BatchNorm uses its running statistics
        return net

    def _predictor(self, layers: tuple[str, ...], height: int, width: int):
        key = (layers, height, width)
        if key not in self._predictors:
            with drop_lines(TRACING_NOISE):
                self._predictors[key] = self._create_predictor(layers, height, width)
        return self._predictors[key]

    def _create_predictor(self, layers: tuple[str, ...], height: int, width: int):
        prefix = self._saved_model(layers, height, width)
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
        """Path prefix of the traced trunk, saving it first if it is not cached.

        Saved into a temporary sibling directory then renamed, so a directory
        under its final name is always complete, even with concurrent runs.
        """
        key = (f"{self.name}_{self.weights_id}_{'-'.join(layers)}_{height}x{width}"
               f"_trunk{TRUNK_VERSION}_paddle{paddle.__version__}")
        final = os.path.join(self.cache_dir, key)
        if not os.path.isdir(final):
            os.makedirs(self.cache_dir, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".{key}.", dir=self.cache_dir)
            try:
                with _on_cpu():
                    spec = paddle.static.InputSpec([None, 3, height, width], "float32", "images")
                    static = paddle.jit.to_static(self.trunk(layers), input_spec=[spec], full_graph=True)
                    paddle.jit.save(static, os.path.join(staging, "model"))
                with contextlib.suppress(OSError):  # lost a race: the winner's copy is identical
                    os.rename(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return os.path.join(final, "model")


def _canonical_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Requested layer names, deduplicated, shallow to deep (avgpool last)."""
    requested = [layers] if isinstance(layers, str) else list(layers)
    unknown = [layer for layer in requested if layer not in LAYERS]
    if unknown:
        raise PatchbenchError(f"unknown layer {unknown[0]!r}; choose from {', '.join(LAYERS)}")
    return tuple(layer for layer in LAYERS if layer in requested)


def _resolve_device(device: str) -> str:
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "auto":
        return "gpu" if has_gpu else "cpu"
    if device == "gpu" and not has_gpu:
        raise PatchbenchError(
            "--device gpu, but this Paddle has no usable GPU "
            f"(compiled with CUDA: {paddle.device.is_compiled_with_cuda()}); "
            "install paddlepaddle-gpu or use --device cpu"
        )
    if device not in ("cpu", "gpu"):
        raise PatchbenchError(f"unknown device {device!r}; choose auto, cpu or gpu")
    return device


@contextlib.contextmanager
def _on_cpu(seed: int | None = None):
    """Run eager Paddle on CPU, without grad, seeded; then restore device and RNG state.

    CPU: a seed then means the same weights on every machine. Restoring: building
    the model (or not, on a cache hit) never shifts the random stream other code sees.
    """
    device = paddle.device.get_device()
    cpu_state, cuda_state = paddle.get_rng_state("cpu"), paddle.get_cuda_rng_state()
    paddle.device.set_device("cpu")
    if seed is not None:
        paddle.seed(seed)
    try:
        with paddle.no_grad():
            yield
    finally:
        paddle.set_rng_state(cpu_state, "cpu")
        if cuda_state:
            paddle.set_cuda_rng_state(cuda_state)
        paddle.device.set_device(device)


def _imagenet_file(name: str) -> str:
    """Local path of Paddle's ImageNet ``.pdparams`` for ``name``, downloaded if needed.

    Paddle's downloader has no timeout and retries; when the file is not cached we
    first check, in a few seconds, that the host (or the https proxy) answers.
    """
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
    from paddle.utils import download
    from paddle.vision.models.resnet import model_urls

    reason = " ".join(str(error).split()) or type(error).__name__
    logger.warning(
        f"WARNING: ImageNet weights for {name} could not be had ({reason}); features come from a "
        f"random initialisation (seed {seed}), so numbers are NOT comparable with papers. "
        f"Fix: download {model_urls[name][0]} and pass --weights PATH/TO/{name}.pdparams "
        f"(or put it in {download.WEIGHTS_HOME})"
    )


def _load_weights(net: paddle.nn.Layer, path: str, name: str) -> None:
    """Load a ``.pdparams`` state dict into ``net``; extra keys (fc.*) are ignored."""
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

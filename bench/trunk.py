"""The eager ResNet trunk a ``Backbone`` traces: stem and stages up to the deepest requested layer.

Defined on first use, since subclassing ``paddle.nn.Layer`` needs Paddle
imported, and a run on cached features never imports it.
"""

from __future__ import annotations

import contextlib
import functools

from bench.paddle_import import paddle as _paddle

STAGES = ("layer1", "layer2", "layer3", "layer4")


@functools.lru_cache(maxsize=1)
def trunk_class():
    """The trunk Layer class; defined on first use, since subclassing needs Paddle imported."""
    paddle = _paddle()

    class _Trunk(paddle.nn.Layer):
        """ResNet stem and stages up to the deepest of ``layers`` (canonical order; avgpool needs layer4).

        ``forward(x [N, 3, H, W])`` returns a tuple with one tensor per layer, in order.
        """

        def __init__(self, net, layers: tuple[str, ...]):
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

    return _Trunk


@contextlib.contextmanager
def on_cpu(seed: int | None = None):
    """Run eager Paddle on CPU, without grad, seeded; then restore device and RNG state.

    CPU: a seed then means the same weights on every machine. Restoring: building
    the model (or not, on a cache hit) never shifts the random stream other code sees.
    """
    paddle = _paddle()
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

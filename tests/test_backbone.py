"""bench.backbone: shapes, fast path == eager, seeding, weights files, ImageNet fallback.

CPU only and offline: the ImageNet download is monkeypatched, never attempted.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bench import backbone as bb  # before paddle: sets the CPU thread env
from bench import threads
from bench.backbone import TRUNK_VERSION, Backbone, feature_shape
from bench.errors import PatchbenchError

import paddle  # noqa: E402
from paddle.utils import download  # noqa: E402

RTOL = 1e-4


def images(n, size=64, seed=0):
    return np.random.RandomState(seed).randn(n, 3, size, size).astype(np.float32)


def reference_features(net, x):
    """Independent eager forward of a torchvision-style paddle ResNet: layer1..3 and pooled layer4."""
    net.eval()
    with paddle.no_grad():
        t = net.maxpool(net.relu(net.bn1(net.conv1(paddle.to_tensor(x)))))
        l1 = net.layer1(t)
        l2 = net.layer2(l1)
        l3 = net.layer3(l2)
        pooled = net.layer4(l3).mean([2, 3])
        return {"layer1": l1.numpy(), "layer2": l2.numpy(), "layer3": l3.numpy(), "avgpool": pooled.numpy()}


def assert_close(actual, expected):
    scale = np.abs(expected).max()
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * scale


@pytest.fixture(scope="module")
def r18():
    return Backbone("resnet18", weights="random", seed=0, device="cpu")


@pytest.fixture
def no_imagenet_cache(tmp_path, monkeypatch):
    """Point Paddle's weights cache at an empty directory, whatever this machine has cached."""
    monkeypatch.setattr(download, "WEIGHTS_HOME", str(tmp_path / "paddle-weights"))
    return tmp_path / "paddle-weights"


def seeded_full_resnet18(seed):
    """A full paddle resnet18 (with fc), as someone would save it."""
    paddle.seed(seed)
    return paddle.vision.models.resnet18()


def test_shapes_at_224(r18):
    feats = r18.extract(images(1, 224), ["layer1", "layer2", "layer3"])
    assert {k: v.shape for k, v in feats.items()} == {
        "layer1": (1, 64, 56, 56),
        "layer2": (1, 128, 28, 28),
        "layer3": (1, 256, 14, 14),
    }
    assert all(v.dtype == np.float32 for v in feats.values())


@pytest.mark.parametrize("size", [(64, 64), (70, 90)])
def test_shapes_small_and_odd(r18, size):
    x = np.zeros((2, 3) + size, np.float32)
    feats = r18.extract(x, ["avgpool", "layer2", "layer1"])
    assert list(feats) == ["layer1", "layer2", "avgpool"]  # shallow to deep
    for layer, value in feats.items():
        assert value.shape == (2,) + feature_shape("resnet18", layer, size)
    assert feats["avgpool"].shape == (2, 512)  # layer4's pool, whatever else is requested


def test_fast_path_equals_eager_with_partial_batch(r18):
    x = images(5)
    layers = ["layer1", "layer2", "layer3", "avgpool"]
    calls = []
    feats = r18.extract(x, layers, batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    with paddle.no_grad():
        eager = r18.trunk(layers)(paddle.to_tensor(x))
    for layer, expected in zip(layers, eager):
        assert_close(feats[layer], expected.numpy())
    layer4 = r18.extract(x, ["layer4"])["layer4"]
    np.testing.assert_allclose(feats["avgpool"], layer4.mean(axis=(2, 3)), rtol=RTOL, atol=1e-6)


def test_avgpool_is_layer4_pool_whatever_else_is_extracted(r18):
    x = images(3)
    alone = r18.extract(x, ["avgpool"])["avgpool"]
    for others in (["layer1"], ["layer2", "layer3"], ["layer1", "layer4"]):
        with_others = r18.extract(x, others + ["avgpool"])["avgpool"]
        assert_close(with_others, alone)
    assert alone.shape == (3, 512)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_batch_size_below_one_is_refused(r18, batch_size):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        r18.extract(images(2), ["layer1"], batch_size=batch_size)


def test_empty_input(r18):
    feats = r18.extract(np.zeros((0, 3, 64, 64), np.float32), ["layer1", "avgpool"])
    assert feats["layer1"].shape == (0, 64, 16, 16) and feats["avgpool"].shape == (0, 512)


def test_seeded_random_init_is_reproducible(r18):
    x = images(2)
    again = Backbone("resnet18", weights="random", seed=0, device="cpu")
    other = Backbone("resnet18", weights="random", seed=1, device="cpu")
    a, b, c = (m.extract(x, ["layer2"])["layer2"] for m in (r18, again, other))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert (again.weights_used, again.weights_id, other.weights_id) == ("random", "random-seed0", "random-seed1")


def test_building_does_not_disturb_global_rng():
    paddle.seed(7)
    expected = paddle.rand([3]).numpy()
    paddle.seed(7)
    Backbone("resnet18", weights="random", seed=0, device="cpu").trunk(["layer1"])
    np.testing.assert_array_equal(paddle.rand([3]).numpy(), expected)


def test_weights_file_loads_and_matches_its_model(tmp_path):
    net = seeded_full_resnet18(123)
    path = tmp_path / "mine.pdparams"
    paddle.save(net.state_dict(), str(path))  # includes fc.*: must be accepted
    model = Backbone("resnet18", weights=str(path), device="cpu")
    assert model.weights_used == "file:mine.pdparams"
    assert model.weights_id.startswith("file-") and len(model.weights_id) == 5 + 16
    x = images(3)
    feats = model.extract(x, ["layer1", "layer2", "layer3", "avgpool"], batch_size=2)
    expected = reference_features(net, x)
    for layer in expected:
        assert_close(feats[layer], expected[layer])


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.pdparams"
    with pytest.raises(PatchbenchError, match="nope.pdparams"):
        Backbone("resnet18", weights=str(path), device="cpu")


@pytest.mark.parametrize("damage", ["shape", "missing", "garbage"])
def test_ill_fitting_weights_file(tmp_path, damage):
    path = tmp_path / f"bad-{damage}.pdparams"
    state = seeded_full_resnet18(0).state_dict()
    if damage == "shape":
        state["layer2.0.conv1.weight"] = paddle.zeros([3, 3, 3, 3])
    elif damage == "missing":
        del state["layer3.1.bn2._mean"]
    if damage == "garbage":
        path.write_bytes(b"not a state dict at all")
    else:
        paddle.save(state, str(path))
    with pytest.raises(PatchbenchError, match=f"bad-{damage}.pdparams"):
        Backbone("resnet18", weights=str(path), device="cpu")


def test_imagenet_download_failure_falls_back_to_random(no_imagenet_cache, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise RuntimeError("Download failed. Retry limit reached")

    monkeypatch.setattr(bb.socket, "create_connection", lambda *a, **k: _Closable())  # "host reachable"
    monkeypatch.setattr(download, "get_weights_path_from_url", refuse)
    model = Backbone("resnet18", weights="imagenet", seed=3, device="cpu")
    err = capsys.readouterr().err
    assert "ImageNet weights" in err and "random" in err and "--weights" in err and "Retry limit" in err
    assert len(err.strip().splitlines()) == 1
    assert (model.weights_used, model.weights_id) == ("random", "random-seed3")
    x = images(1)
    np.testing.assert_array_equal(
        model.extract(x, ["layer1"])["layer1"],
        Backbone("resnet18", weights="random", seed=3, device="cpu").extract(x, ["layer1"])["layer1"],
    )


def test_unreachable_host_skips_paddle_download(no_imagenet_cache, monkeypatch, capsys):
    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("Paddle's download has no timeout; it must not be tried")

    monkeypatch.setattr(bb.socket, "create_connection", unreachable)
    monkeypatch.setattr(download, "get_weights_path_from_url", must_not_be_called)
    model = Backbone("resnet18", device="cpu")
    assert model.weights_used == "random"
    assert "cannot reach" in capsys.readouterr().err


def test_imagenet_from_paddle_cache(no_imagenet_cache, monkeypatch, tmp_path):
    """A weights file already in Paddle's cache is used without any network check."""
    no_imagenet_cache.mkdir()
    cached = no_imagenet_cache / "resnet18.pdparams"
    net = seeded_full_resnet18(5)
    paddle.save(net.state_dict(), str(cached))

    def no_network(*args, **kwargs):
        raise AssertionError("no network check when the file is cached")

    monkeypatch.setattr(bb.socket, "create_connection", no_network)
    monkeypatch.setattr(download, "get_weights_path_from_url", lambda url, md5=None: str(cached))
    model = Backbone("resnet18", weights="imagenet", device="cpu")
    assert (model.weights_used, model.weights_id) == ("imagenet", "imagenet")
    x = images(1)
    assert_close(model.extract(x, ["layer3"])["layer3"], reference_features(net, x)["layer3"])


def test_saved_model_cache_is_reused(tmp_path):
    x = images(1)
    first = Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=tmp_path)
    expected = first.extract(x, ["layer1", "layer2"])["layer2"]
    assert [p.name for p in tmp_path.iterdir()] == [f"resnet18_random-seed0_layer1-layer2_64x64_trunk{TRUNK_VERSION}_paddle{paddle.__version__}"]
    second = Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=tmp_path)
    np.testing.assert_array_equal(second.extract(x, ["layer2", "layer1"])["layer2"], expected)
    assert second._net is None  # served from the cache: the eager model was never built
    assert len(os.listdir(tmp_path)) == 1  # no staging leftovers


def test_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHBENCH_CACHE", str(tmp_path))
    assert Backbone("resnet18", weights="random", device="cpu").cache_dir == str(tmp_path / "models")


@pytest.mark.parametrize(
    "kwargs, layers, message",
    [
        ({"name": "vgg16"}, ["layer1"], "unknown backbone"),
        ({}, ["layer9"], "unknown layer"),
        ({"device": "tpu"}, ["layer1"], "unknown device"),
    ],
)
def test_bad_names(kwargs, layers, message):
    with pytest.raises(PatchbenchError, match=message):
        Backbone(**{"weights": "random", "device": "cpu", **kwargs}).extract(images(1), layers)


@pytest.mark.skipif(paddle.device.is_compiled_with_cuda(), reason="this Paddle has CUDA")
def test_gpu_requested_without_cuda():
    with pytest.raises(PatchbenchError, match="--device cpu"):
        Backbone("resnet18", weights="random", device="gpu")
    assert Backbone("resnet18", weights="random", device="auto").device == "cpu"


def test_wide_resnet50_2_tiny_input():
    model = Backbone("wide_resnet50_2", weights="random", seed=0, device="cpu")
    x = images(3, size=32)
    layers = ["layer1", "layer2", "layer3", "avgpool"]
    feats = model.extract(x, layers, batch_size=2)
    assert {k: v.shape for k, v in feats.items()} == {
        "layer1": (3, 256, 8, 8),
        "layer2": (3, 512, 4, 4),
        "layer3": (3, 1024, 2, 2),
        "avgpool": (3, 2048),
    }
    with paddle.no_grad():
        eager = model.trunk(layers)(paddle.to_tensor(x))
    for layer, expected in zip(layers, eager):
        assert_close(feats[layer], expected.numpy())


@pytest.mark.parametrize("vendor, mkl", [("AuthenticAMD", "5"), ("GenuineIntel", None)])
def test_configure_cpu_env(monkeypatch, vendor, mkl):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(threads, "cpu_vendor", lambda: vendor)
    monkeypatch.delitem(sys.modules, "paddle")  # as if paddle were not imported yet
    env = threads.configure_cpu_env()
    assert env.get("OMP_NUM_THREADS") == str(threads.cpu_count())
    assert env.get("MKL_DEBUG_CPU_TYPE") == mkl  # on Intel it would downgrade AVX-512 to AVX2


@pytest.mark.skipif(threads.cpu_count() < 2, reason="needs 2 cores")
def test_env_set_in_process_reaches_mkl():
    """MKL and OpenMP read the env at their first call: setting it in-process before paddle is enough."""
    code = (
        "from bench.threads import configure_cpu_env; configure_cpu_env()\n"
        "import paddle; a = paddle.rand([256, 256]); (a @ a).numpy()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
    env.update(MKL_VERBOSE="1", PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    used = [int(n) for n in re.findall(r"NThr:(\d+)", out.stdout)]
    assert used and used[0] > 1  # without configure_cpu_env paddle forces 1 thread


class _Closable:
    def close(self):
        pass

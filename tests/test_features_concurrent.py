"""Two worker processes storing the same feature cache entry at once leave one valid entry: no lock,
only atomic renames of files named by their own CRC-32, and the manifest written last."""

import json
import logging
import multiprocessing
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

import bench.features
from bench.cache_command import entries, listing
from bench.features import FORMAT_VERSION, MANIFEST, DiskEntry
from bench.filehash import file_crc32

ROUNDS = 20
N_IMAGES = 6
LAYERS = ("layer1", "layer2", "layer3")


def description() -> dict:
    """An entry's description as ``describe`` shapes it; only ``files`` (one per image) is read back."""
    return {"version": FORMAT_VERSION, "category": "weave", "split": "train", "backbone": "resnet18",
            "weights": "random", "resize": 72, "crop": 64,
            "files": [[f"/data/weave/train/good/{i:03d}.png", 1000 + i, 0] for i in range(N_IMAGES)]}


def writer_arrays(writer: int, round_: int) -> dict[str, np.ndarray]:
    """What ``writer`` (0 or 1) extracts in a round: layer -> (N_IMAGES, 32, 16, 16) float32, 196 KB.

    Both writers extract the same features but for the last bit of every value, as two workers on
    other CPUs or thread counts would: their files for a layer differ.
    """
    rng = np.random.default_rng(round_)
    arrays = {layer: rng.standard_normal((N_IMAGES, 32, 16, 16)).astype(np.float32) for layer in LAYERS}
    if writer == 1:
        arrays = {layer: np.nextafter(a, np.float32(np.inf)) for layer, a in arrays.items()}
    return arrays


def store_rounds(root: Path, writer: int, barrier, results) -> None:
    """One worker process: store every round's entry as soon as the other worker is ready too.

    Puts ``("ok", [(start, end) of each store])`` on ``results``, or ``("error", traceback)``.
    """
    try:
        spans = []
        for round_ in range(ROUNDS):
            arrays = writer_arrays(writer, round_)
            barrier.wait()  # both writers start each round's store together
            start = time.monotonic()
            DiskEntry(root / f"round{round_:02d}", description()).store(arrays)
            spans.append((start, time.monotonic()))
        results.put(("ok", spans))
    except BaseException:  # noqa: BLE001 - the parent reports it instead of waiting for a timeout
        results.put(("error", traceback.format_exc()))


@pytest.fixture
def warnings_said():
    """The patchbench logger's warnings while the test runs (it does not propagate to caplog's root handler)."""

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    keep = Keep()
    logging.getLogger("patchbench").addHandler(keep)
    yield keep.messages
    logging.getLogger("patchbench").removeHandler(keep)


def check_entry(folder: Path, candidates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every file the manifest names exists, and a fresh load gives every layer, bytes as one candidate's."""
    manifest = json.loads((folder / MANIFEST).read_text())
    assert sorted(manifest["layers"]) == sorted(LAYERS)
    for info in manifest["layers"].values():
        assert (folder / info["file"]).is_file(), f"{folder.name}: the manifest names a missing {info['file']}"
    loaded = DiskEntry(folder, description()).load(LAYERS)
    assert sorted(loaded) == sorted(LAYERS), f"{folder.name}: loaded only {sorted(loaded)}"
    for layer, array in loaded.items():
        assert array.tobytes() in {c[layer].tobytes() for c in candidates}, f"{folder.name}/{layer}: foreign bytes"
    return loaded


def test_two_processes_storing_one_entry_at_once_leave_a_valid_entry(tmp_path, warnings_said):
    context = multiprocessing.get_context("spawn")  # separate interpreters, as Dask workers are
    barrier, results = context.Barrier(2, timeout=60), context.Queue()
    workers = [context.Process(target=store_rounds, args=(tmp_path, writer, barrier, results)) for writer in (0, 1)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    errors = [text for status, text in reports if status == "error"]
    assert not errors, "\n".join(errors)
    assert [worker.exitcode for worker in workers] == [0, 0]

    for round_ in range(ROUNDS):
        check_entry(tmp_path / f"round{round_:02d}", [writer_arrays(w, round_) for w in (0, 1)])
    assert warnings_said == []
    # Proof the test raced at all: in some rounds both stores were under way at the same moment.
    # (CLOCK_MONOTONIC is one clock for every process of the machine.)
    (_, spans_a), (_, spans_b) = reports
    overlapping = sum(a0 < b1 and b0 < a1 for (a0, a1), (b0, b1) in zip(spans_a, spans_b))
    assert overlapping >= 1, "the two writers never stored at the same time: the test proved nothing"


def test_a_writer_storing_between_anothers_renames_and_manifest_leaves_a_valid_entry(
        tmp_path, monkeypatch, warnings_said):
    """The interleaving that broke the old ``<layer>.npy`` entries, forced: B has renamed its layer files
    and taken their CRCs; A then stores the whole entry (renames, manifest); B's manifest lands last.
    Before, A's files replaced B's under the same names and B's manifest recorded B's CRCs: every layer
    was reported corrupted and extracted again."""
    folder = tmp_path / "entry"
    arrays_a, arrays_b = writer_arrays(0, 0), writer_arrays(1, 0)
    real_write_text_atomic = bench.features.write_text_atomic
    writer_a = [lambda: DiskEntry(folder, description()).store(arrays_a)]

    def write_text_atomic(path, text):
        if json.loads(text)["layers"] and writer_a:  # B's final manifest, not its first, empty one
            writer_a.pop()()
        return real_write_text_atomic(path, text)

    monkeypatch.setattr(bench.features, "write_text_atomic", write_text_atomic)
    DiskEntry(folder, description()).store(arrays_b)
    assert writer_a == []  # A did store in between

    loaded = check_entry(folder, [arrays_b])  # B's manifest is the last: it names B's files
    assert all(np.array_equal(loaded[layer], arrays_b[layer]) for layer in LAYERS)
    assert warnings_said == []
    # A's files are left where they are, named by no manifest: a reader may still be opening them.
    assert len(list(folder.glob("*.npy"))) == 2 * len(LAYERS)
    ((entry_folder, manifest),) = entries(tmp_path)
    assert entry_folder == folder and sorted(manifest["layers"]) == sorted(LAYERS)
    assert "layer1,layer2,layer3" in listing(tmp_path)


def test_an_entry_in_the_old_layout_still_loads_and_takes_new_layers(tmp_path, warnings_said):
    """Entries written before the CRC names (``<layer>.npy``) load as they are; storing more keeps them."""
    folder = tmp_path / "entry"
    folder.mkdir()
    old = writer_arrays(0, 0)
    np.save(folder / "layer1.npy", old["layer1"], allow_pickle=False)
    record = {"file": "layer1.npy", "shape": list(old["layer1"].shape), "dtype": "float32",
              "bytes": (folder / "layer1.npy").stat().st_size, "crc32": file_crc32(folder / "layer1.npy")}
    (folder / MANIFEST).write_text(json.dumps({"description": description(), "layers": {"layer1": record}}))

    DiskEntry(folder, description()).store({layer: old[layer] for layer in ("layer2", "layer3")})
    loaded = check_entry(folder, [old])
    assert json.loads((folder / MANIFEST).read_text())["layers"]["layer1"]["file"] == "layer1.npy"
    assert all(np.array_equal(loaded[layer], old[layer]) for layer in LAYERS)
    assert warnings_said == []

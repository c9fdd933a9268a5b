"""Shared fixtures: the repository's MNIST models and data, the `maxi` CLI, the example plugin."""

import gzip
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
MNIST = ROOT / "fixtures" / "mnist"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def mnist_test_image(index: int) -> np.ndarray:
    """MNIST test image `index` as [28, 28, 1] float64, pixel/255 - 0.5 (as maxi's reader)."""
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    start = 16 + index * 784
    pixels = np.frombuffer(data[start : start + 784], dtype=np.uint8)
    return (pixels.astype(np.float64) / 255.0 - 0.5).reshape(28, 28, 1)


def ort_callable(path: pathlib.Path):
    """An ONNX file as a Python callable through onnxruntime (one thread: deterministic)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def call(batch):
        return session.run(None, {name: np.asarray(batch, dtype=np.float32)})[0]

    return call


def cargo_artifact(name: str, package: str) -> pathlib.Path:
    """target/release/<name>, built with cargo if it is not there yet."""
    path = TARGET / name
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", package], cwd=ROOT, check=True
        )
    assert path.exists(), f"{path} was not built"
    return path


@pytest.fixture(scope="session")
def image_2953() -> np.ndarray:
    return mnist_test_image(2953)


@pytest.fixture(scope="session")
def maxi_cli() -> pathlib.Path:
    """The `maxi` command (MAXI_CLI, or target/release/maxi)."""
    given = os.environ.get("MAXI_CLI")
    if given:
        return pathlib.Path(given)
    return cargo_artifact("maxi", "maxi-cli")


@pytest.fixture(scope="session")
def example_plugin() -> pathlib.Path:
    return cargo_artifact("libmaxi_example_gradient_plugin.so", "maxi-example-gradient-plugin")


@pytest.fixture(scope="session")
def ort_dylib() -> str:
    """libonnxruntime from the onnxruntime wheel (for the CLI's onnxruntime backend)."""
    import onnxruntime

    capi = pathlib.Path(onnxruntime.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"))
    assert libs, f"no libonnxruntime.so in {capi}"
    return str(libs[-1])

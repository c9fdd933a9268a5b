"""The seed tutorial's pipeline from Python on the bundled MNIST models: through ONNX paths
(run in Rust) and through onnxruntime callables, each against the `maxi` CLI with the same
config and seed."""

import json
import subprocess
import sys

import numpy as np
import pytest

import maxi
from conftest import MNIST, ROOT, ort_callable

NUM_ITER, SAVE_FREQ, SEED = 24, 10, 7

# the seed's kwargs (gradient_example.md), verbatim
LOSS_KWARGS = {"mode": "PP", "c": 100, "gamma": 300, "K": 30}
OPTIMIZER_KWARGS = {"l1": 0.1, "l2": 30, "eta": 1.0}
GRADIENT_KWARGS = {"mu": None, "num_iter": 150}


def seed_generator(ae):
    return maxi.ExplanationGenerator(
        loss="TF_CEMLoss",
        optimizer="AoExpGradOptimizer",
        gradient="URVGradientEstimator",
        loss_kwargs={**LOSS_KWARGS, "AE": ae},
        optimizer_kwargs=OPTIMIZER_KWARGS,
        gradient_kwargs=GRADIENT_KWARGS,
        num_iter=NUM_ITER,
        save_freq=SAVE_FREQ,
        seed=SEED,
    )


def run_cli(maxi_cli, tmp_path, backend, env=None):
    """The same pipeline through `maxi explain`; returns {update: savepoint} and the report."""
    config = tmp_path / "seed.toml"
    config.write_text(
        f"""
[generator]
num_iter = {NUM_ITER}
save_freq = {SAVE_FREQ}
seed = {SEED}

[model]
path = "{MNIST / 'mnist_cnn.onnx'}"
backend = "{backend}"

[input]
path = "mnist:2953"

[loss]
name = "TF_CEMLoss"
mode = "PP"
c = 100
gamma = 300
K = 30
AE = "{MNIST / 'mnist_ae.onnx'}"

[optimizer]
name = "AoExpGradOptimizer"
l1 = 0.1
l2 = 30
eta = 1.0

[gradient]
name = "URVGradientEstimator"
num_iter = 150
"""
    )
    out = tmp_path / "out"
    subprocess.run(
        [str(maxi_cli), "explain", "--config", str(config), "--out", str(out), "--quiet"],
        check=False,
        env=env,
    )
    report = json.loads((out / "report.json").read_text())
    points = {int(p.stem[len("iter_") :]): np.load(p) for p in out.glob("iter_*.npy")}
    return points, np.load(out / "explanation.npy"), report


def test_onnx_paths_give_the_clis_savepoints_bit_for_bit(maxi_cli, tmp_path, image_2953):
    cem = seed_generator(str(MNIST / "mnist_ae.onnx"))
    results, meta = cem.run(image_2953, MNIST / "mnist_cnn.onnx")
    assert meta is None
    cli_points, cli_explanation, report = run_cli(maxi_cli, tmp_path, "onnx")
    assert sorted(int(k) for k in results) == sorted(cli_points) == [1, 10, 20, 24]
    for k, v in results.items():
        np.testing.assert_array_equal(v, cli_points[int(k)])
    e = cem.last_explanation
    np.testing.assert_array_equal(e.candidate, cli_explanation)
    assert e.model_rows == report["model_rows"]


def test_onnxruntime_callable_matches_the_cli_on_onnxruntime(
    maxi_cli, tmp_path, image_2953, ort_dylib
):
    # the CLI opens the AE with [model]'s backend (onnxruntime here): so does this side
    cem = seed_generator(maxi.Model(str(MNIST / "mnist_ae.onnx"), backend="onnxruntime"))
    calls = []
    cnn = ort_callable(MNIST / "mnist_cnn.onnx")

    def inference_call(batch):
        calls.append(batch.shape)
        return cnn(batch)

    results, _ = cem.run(image_2953, inference_call)
    # the class of the image first, then one batch per update: the base point and 150
    # directions
    assert calls[0] == (1, 28, 28, 1)
    assert calls[1:NUM_ITER + 1] == [(151, 28, 28, 1)] * NUM_ITER
    env = {"ORT_DYLIB_PATH": ort_dylib, "PATH": "/usr/bin:/bin"}
    cli_points, _, report = run_cli(maxi_cli, tmp_path, "onnxruntime", env)
    assert sorted(int(k) for k in results) == sorted(cli_points)
    for k, v in results.items():
        # the same library on the same rows (the CLI splits batches over sessions, the
        # callable gets them whole): the same bits
        np.testing.assert_array_equal(v, cli_points[int(k)])
    assert cem.last_explanation.model_rows == report["model_rows"]


def test_the_seed_example_script_runs_with_callables():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_pipeline.py"), "--num-iter", "5"],
        check=True,
        capture_output=True,
        text=True,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["original_class"] == 5
    # the image's class, 5 updates of 1 + 150 rows, the final iterate
    assert summary["model_rows"] == 1 + 5 * 151 + 1


def test_ae_as_a_callable_equals_the_same_runtime_in_rust(image_2953, ort_dylib, monkeypatch):
    ae = ort_callable(MNIST / "mnist_ae.onnx")
    shapes = []

    def AE(batch):
        shapes.append(batch.shape)
        return ae(batch)

    cem = seed_generator(AE)
    from_python = cem.explain(image_2953, MNIST / "mnist_cnn.onnx")
    assert shapes and all(s[1:] == (28, 28, 1) for s in shapes)
    # the same autoencoder in ONNX Runtime, run by maxi in Rust without the GIL
    monkeypatch.setenv("ORT_DYLIB_PATH", ort_dylib)
    in_rust = maxi.Model(MNIST / "mnist_ae.onnx", backend="onnxruntime", threads=1)
    by_model = seed_generator(in_rust).explain(image_2953, MNIST / "mnist_cnn.onnx")
    for t, v in from_python.savepoints.items():
        np.testing.assert_array_equal(v, by_model.savepoints[t])

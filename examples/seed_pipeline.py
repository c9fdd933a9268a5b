"""The seed tutorial's pipeline (gradient_example.md) from Python, on the bundled MNIST models.

The block between the two "seed" comments is the tutorial's code with only the class names
turned into strings (``maxi.TF_CEMLoss`` also works: the module has those names as string
constants). The models run in ONNX Runtime, called from Python like any other model.

    pip install ./crates/maxi-py onnxruntime
    python examples/seed_pipeline.py [--num-iter 1500] [--seed 0] [--onnx-path]

``--onnx-path`` hands maxi the .onnx files instead of Python callables: they then run in Rust
(tract) without the GIL. The last line printed is a JSON summary.
"""

import argparse
import gzip
import json
import pathlib
import time

import numpy as np

import maxi

ROOT = pathlib.Path(__file__).resolve().parent.parent
MNIST = ROOT / "fixtures" / "mnist"


def mnist_test_image(index: int) -> np.ndarray:
    """MNIST test image `index` as [28, 28, 1] float64 in [-0.5, 0.5] (what the models take)."""
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    start = 16 + index * 784
    pixels = np.frombuffer(data[start : start + 784], dtype=np.uint8)
    return (pixels.astype(np.float64) / 255.0 - 0.5).reshape(28, 28, 1)


def onnxruntime_callable(path: pathlib.Path):
    """An ONNX model as a Python callable on batches, through onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def call(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch.astype(np.float32)})[0]

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-iter", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image", type=int, default=2953, help="MNIST test image")
    parser.add_argument("--onnx-path", action="store_true", help="run the models in Rust")
    args = parser.parse_args()

    image = mnist_test_image(args.image)
    if args.onnx_path:
        inference_call, AE = MNIST / "mnist_cnn.onnx", MNIST / "mnist_ae.onnx"
    else:
        inference_call = onnxruntime_callable(MNIST / "mnist_cnn.onnx")
        AE = onnxruntime_callable(MNIST / "mnist_ae.onnx")

    # --- seed (gradient_example.md), class names as strings ---
    # chose desired component classes for the loss, optimizer and gradient
    # set our 'Uniform Random Vector-based Gradient Estimation' as gradient method
    loss_class = "TF_CEMLoss"
    optimizer_class = "AoExpGradOptimizer"
    gradient_class = "URVGradientEstimator"

    # specify the configuration for the components
    loss_kwargs = {"mode": "PP", "c": 100, "gamma": 300, "K": 30, "AE": AE}
    optimizer_kwargs = {"l1": 0.1, "l2": 30, "eta": 1.0}
    gradient_kwargs = {"mu": None, "num_iter": 150}

    # instantiate the "ExplanationGenerator" with our settings
    cem = maxi.ExplanationGenerator(
        loss=loss_class,
        optimizer=optimizer_class,
        gradient=gradient_class,
        loss_kwargs=loss_kwargs,
        optimizer_kwargs=optimizer_kwargs,
        gradient_kwargs=gradient_kwargs,
        num_iter=args.num_iter,  # the seed's 1500 by default
        save_freq=500,
        seed=args.seed,  # not in the seed: maxi's runs are seeded (default 0)
    )
    # --- end of seed ---

    started = time.perf_counter()
    results, _ = cem.run(image=image, inference_call=inference_call)
    wall = time.perf_counter() - started

    e = cem.last_explanation
    classify = inference_call if callable(inference_call) else maxi.Model(inference_call)
    print("savepoints:", {k: (v.shape, str(v.dtype)) for k, v in results.items()})
    print(
        json.dumps(
            {
                "original_class": int(np.argmax(classify(image[None])[0])),
                "explanation_class": int(np.argmax(classify(e.candidate[None])[0])),
                "valid": e.valid,
                "entries_used": e.to_dict()["outcome"]["size"]["support"],
                "model_rows": e.model_rows,
                "wall_s": round(wall, 3),
                "model_s": round(e.model_seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

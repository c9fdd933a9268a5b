"""Framework time per update outside a Python model, at d = 784 (MNIST-sized), q = 100.

    python crates/maxi-py/bench/overhead.py [--num-iter 500] [--repeat 5]

The model is a numpy linear classifier (784 x 10); the time inside it is measured around the
call, so "outside" is everything else: drawing the directions, the loss, the optimiser, the
executor, and handing each batch to Python and the scores back (GIL, numpy conversions).
Prints the median over the repeats for float64 and float32 images, and one JSON line: wall
time, and CPU time (every thread of the process, minus the model's own CPU time on the calling
thread), which other processes on a loaded machine do not inflate.
"""

import argparse
import json
import statistics
import time

import numpy as np

import maxi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-iter", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    W = rng.normal(size=(784, 10))
    image = rng.uniform(0.0, 1.0, size=(28, 28, 1))
    inside = [0.0, 0.0]

    def model(batch):
        t, c = time.perf_counter(), time.thread_time()
        out = batch.reshape(len(batch), -1) @ W
        inside[0] += time.perf_counter() - t
        inside[1] += time.thread_time() - c
        return out

    generator = maxi.ExplanationGenerator(
        loss="cem",
        optimizer="ao_exp_grad",
        gradient="urv",
        loss_kwargs={"mode": "PP", "c": 1.0, "K": 1.0},
        optimizer_kwargs={"l1": 0.1, "l2": 0.0},
        gradient_kwargs={"sample_num": 100},
        num_iter=args.num_iter,
        seed=0,
    )
    summary = {}
    for dtype in (np.float64, np.float32):
        per_update, cpu_per_update = [], []
        for _ in range(args.repeat):
            inside[0] = inside[1] = 0.0
            started, cpu_started = time.perf_counter(), time.process_time()
            e = generator.explain(image.astype(dtype), model)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            per_update.append((wall - inside[0]) / args.num_iter * 1e3)
            cpu_per_update.append((cpu - inside[1]) / args.num_iter * 1e3)
        ms = statistics.median(per_update)
        cpu_ms = statistics.median(cpu_per_update)
        summary[np.dtype(dtype).name] = {"wall_ms": round(ms, 4), "cpu_ms": round(cpu_ms, 4)}
        print(
            f"{np.dtype(dtype).name}: {ms:.3f} ms wall, {cpu_ms:.3f} ms CPU per update outside "
            f"the model (wall min {min(per_update):.3f}, max {max(per_update):.3f}; "
            f"inside the model {inside[0] / args.num_iter * 1e3:.3f} ms; "
            f"{e.model_rows} rows, {args.num_iter} updates, q = 100, d = 784)"
        )
    print(json.dumps({"ms_per_update_outside_model": summary, "num_iter": args.num_iter}))


if __name__ == "__main__":
    main()

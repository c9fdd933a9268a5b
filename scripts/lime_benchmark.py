#!/usr/bin/env python3
"""maxi's superpixel LIME against the Python `lime` package on the 20 bundled CIFAR-10 images.

Both explain the same model file (fixtures/cifar10/resnet8_cifar10_nhwc.onnx, output `probs`)
with ONNX Runtime on 1 thread, on the same superpixels (maxi's SLIC from
configs/cifar10_lime.toml, handed to `lime` as its segmentation_fn), with the same number of
samples and the same hide colour (black). Per image it records:

* wall time and the time outside the model (wall minus the time spent in model calls), the
  minimum over --reps runs (the machine is shared: the minimum is the least disturbed run);
* deletion / insertion AUC of each explanation: segments ranked by weight, the top k hidden
  (black) / revealed on black, the probability of the explained class recorded for
  k = 0..n and integrated over the fraction k/n (0..1); deletion lower is better, insertion
  higher. A random ranking (mean of 10 seeded permutations) is the baseline.

Usage (from the repository root, after `cargo build --release -p maxi-cli`):
    pip install lime scikit-image onnxruntime
    python3 scripts/lime_benchmark.py [--reps 3] [--json results.json]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

# lime 0.2.0.1 draws a tqdm progress bar with no option to turn it off; silence it so that
# its time outside the model is its own work, not terminal output
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "fixtures/cifar10/resnet8_cifar10_nhwc.onnx")
IMAGES = sorted(glob.glob(os.path.join(ROOT, "fixtures/cifar10/foolbox20/*.png")))
CONFIG = os.path.join(ROOT, "configs/cifar10_lime.toml")


def session():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])


def probs(sess, batch):
    return sess.run(["probs"], {"input": np.asarray(batch, dtype=np.float32)})[0]


def auc_curves(sess, image, segments, order, t):
    """Deletion and insertion AUC of ranking `order` (most important first)."""
    n = len(order)
    dele, ins = [], []
    for k in range(n + 1):
        top = np.isin(segments, order[:k])[..., None]
        dele.append(np.where(top, 0.0, image))
        ins.append(np.where(top, image, 0.0))
    p = probs(sess, np.concatenate([dele, ins]))[:, t]
    curve_d, curve_i = p[: n + 1], p[n + 1 :]
    area = lambda c: float(np.sum((c[1:] + c[:-1]) / 2) / n)
    return area(curve_d), area(curve_i)


def run_maxi(maxi, image_path, out, samples, seed):
    subprocess.run(
        [maxi, "explain", "--quiet", "--config", CONFIG, "--input", image_path,
         "--backend", "onnxruntime", "--threads", "1", "--seed", str(seed), "--out", out],
        check=True,
    )
    with open(os.path.join(out, "report.json")) as f:
        r = json.load(f)
    assert r["config"]["loss"]["n_samples"] == samples, "config and --samples disagree"
    seg = np.load(os.path.join(out, "segments.npy"))
    w = np.load(os.path.join(out, "weights.npy"))
    return r["wall_s"], r["wall_s"] - r["model_s"], r["model_rows"], seg, w


def run_lime(sess, image, segments, t, samples, seed, batch_size):
    from lime import lime_image

    model_s = [0.0]
    rows = [0]

    def classifier(batch):
        t0 = time.perf_counter()
        out = probs(sess, batch)
        model_s[0] += time.perf_counter() - t0
        rows[0] += len(batch)
        return out

    explainer = lime_image.LimeImageExplainer(random_state=seed)
    t0 = time.perf_counter()
    exp = explainer.explain_instance(
        image, classifier, labels=(t,), top_labels=None, hide_color=0,
        num_samples=samples, batch_size=batch_size,
        segmentation_fn=lambda img: segments, random_seed=seed,
    )
    wall = time.perf_counter() - t0
    w = np.zeros(int(segments.max()) + 1)
    for s, v in exp.local_exp[t]:
        w[s] = v
    return wall, wall - model_s[0], rows[0], w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maxi", default=os.path.join(ROOT, "target/release/maxi"))
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lime-batch-size", type=int, default=100)
    ap.add_argument("--json")
    a = ap.parse_args()
    sess = session()
    rng = np.random.default_rng(a.seed)
    rows = []
    tmp = tempfile.mkdtemp(prefix="lime-bench-")
    for i, path in enumerate(IMAGES):
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        t = int(np.argmax(probs(sess, image[None])[0]))
        mx = [run_maxi(a.maxi, path, os.path.join(tmp, f"m{i}_{r}"), a.samples, a.seed)
              for r in range(a.reps)]
        seg, w_maxi = mx[-1][3], mx[-1][4]
        lm = [run_lime(sess, image, seg, t, a.samples, a.seed, a.lime_batch_size)
              for _ in range(a.reps)]
        w_lime = lm[-1][3]
        n = len(w_maxi)
        order = lambda w: np.argsort(-w, kind="stable")
        d_m, i_m = auc_curves(sess, image, seg, order(w_maxi), t)
        d_l, i_l = auc_curves(sess, image, seg, order(w_lime), t)
        rand = [auc_curves(sess, image, seg, rng.permutation(n), t) for _ in range(10)]
        d_r, i_r = float(np.mean([r[0] for r in rand])), float(np.mean([r[1] for r in rand]))
        row = dict(
            image=os.path.basename(path), segments=n, cls=t,
            maxi_wall=min(m[0] for m in mx), maxi_outside=min(m[1] for m in mx), maxi_rows=mx[-1][2],
            lime_wall=min(l[0] for l in lm), lime_outside=min(l[1] for l in lm), lime_rows=lm[-1][2],
            del_maxi=d_m, del_lime=d_l, del_random=d_r,
            ins_maxi=i_m, ins_lime=i_l, ins_random=i_r,
        )
        rows.append(row)
        print(f"{row['image']:34s} n={n:2d} del maxi {d_m:.3f} lime {d_l:.3f} rand {d_r:.3f} | "
              f"ins maxi {i_m:.3f} lime {i_l:.3f} rand {i_r:.3f} | outside ms maxi "
              f"{1e3 * row['maxi_outside']:.1f} lime {1e3 * row['lime_outside']:.1f}", file=sys.stderr)
    med = lambda k: float(np.median([r[k] for r in rows]))
    beats = sum(r["del_maxi"] < r["del_random"] for r in rows)
    summary = {k: med(k) for k in rows[0] if k not in ("image", "cls")}
    summary["maxi_beats_random_deletion"] = f"{beats}/{len(rows)}"
    summary["lime_beats_random_deletion"] = f"{sum(r['del_lime'] < r['del_random'] for r in rows)}/{len(rows)}"
    summary["outside_ratio"] = summary["maxi_outside"] / summary["lime_outside"]
    print(json.dumps(summary, indent=1))
    print("\n| | maxi `lime` | Python `lime` 0.2.0.1 | random order |")
    print("|---|---|---|---|")
    print(f"| median deletion AUC (lower is better) | {summary['del_maxi']:.3f} | {summary['del_lime']:.3f} | {summary['del_random']:.3f} |")
    print(f"| median insertion AUC (higher is better) | {summary['ins_maxi']:.3f} | {summary['ins_lime']:.3f} | {summary['ins_random']:.3f} |")
    print(f"| deletion better than random | {summary['maxi_beats_random_deletion']} | {summary['lime_beats_random_deletion']} | |")
    print(f"| median wall per image (s) | {summary['maxi_wall']:.3f} | {summary['lime_wall']:.3f} | |")
    print(f"| median time outside the model (ms) | {1e3 * summary['maxi_outside']:.1f} | {1e3 * summary['lime_outside']:.1f} | |")
    print(f"| model rows per image | {summary['maxi_rows']:.0f} | {summary['lime_rows']:.0f} | |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()

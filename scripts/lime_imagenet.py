#!/usr/bin/env python3
"""Superpixel LIME on the bundled 224x224 photo (SqueezeNet 1.1): maxi against the Python
`lime` package, same segments (maxi's SLIC label map handed to lime as segmentation_fn), same
model file, ONNX Runtime on 1 thread, 1,000 samples, black hide colour.

    python3 scripts/lime_imagenet.py [--maxi target/release/maxi]

Prints wall time, time outside the model and model rows for both. Needs `pip install lime
onnxruntime pillow numpy`.
"""
import argparse, json, os, subprocess, tempfile, time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/imagenet_lime.toml")
MODEL = os.path.join(ROOT, "fixtures/imagenet/squeezenet1.1_fp32.onnx")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maxi", default=os.path.join(ROOT, "target/release/maxi"))
    args = ap.parse_args()
    out = tempfile.mkdtemp()
    subprocess.run([args.maxi, "explain", "--quiet", "--config", CONFIG, "--backend",
                    "onnxruntime", "--threads", "1", "--out", out], check=True)
    r = json.load(open(os.path.join(out, "report.json")))
    segments = np.load(os.path.join(out, "segments.npy"))
    # the photo as maxi explains it (0..1 after resize + crop): the first savepoint's input
    # is not stored, so rebuild it the same way from the JPEG
    from PIL import Image
    im = Image.open(os.path.join(ROOT, "fixtures/imagenet/foolbox20/imagenet_00_243.jpg")).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
    W, H = im.size
    l, t = (W - 224) // 2, (H - 224) // 2
    image = np.asarray(im.crop((l, t, l + 224, t + 224))).astype(np.float64) / 255.0

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
    mean = np.array([104.0, 117.0, 123.0], np.float32)
    model_s = [0.0]
    rows = [0]

    def classifier(batch):
        t0 = time.perf_counter()
        x = (np.asarray(batch, np.float32) * 255.0)[..., ::-1] - mean
        p = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        model_s[0] += time.perf_counter() - t0
        rows[0] += len(batch)
        return p.reshape(len(batch), -1)

    from lime import lime_image
    explainer = lime_image.LimeImageExplainer(random_state=0)
    t0 = time.perf_counter()
    explainer.explain_instance(image, classifier, labels=(243,), top_labels=None, hide_color=0,
                               num_samples=1000, batch_size=10,
                               segmentation_fn=lambda img: segments, random_seed=0)
    wall = time.perf_counter() - t0
    print(f"segments: {int(segments.max()) + 1}")
    print(f"maxi: wall {r['wall_s']:.2f} s, outside the model {r['wall_s'] - r['model_s']:.2f} s "
          f"({100 * (r['wall_s'] - r['model_s']) / r['wall_s']:.1f} %), rows {r['model_rows']}")
    print(f"lime: wall {wall:.2f} s, outside the model {wall - model_s[0]:.2f} s "
          f"({100 * (wall - model_s[0]) / wall:.1f} %), rows {rows[0]}")


if __name__ == "__main__":
    main()

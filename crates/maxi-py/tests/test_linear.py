"""A numpy-only model (a linear classifier): known answers, savepoints' keys, shapes and
dtypes, determinism, the full record, and the GIL being released while Rust runs."""

import threading
import time

import numpy as np
import pytest

import maxi

# 4x4 inputs; class 0 scores 4*x[0,0], class 1 scores x[0,1], class 2 scores 0: an input of
# ones is class 0, and the smallest pertinent positive keeps only pixel (0, 0).
W = np.zeros((16, 3))
W[0, 0] = 4.0
W[1, 1] = 1.0


def linear(batch):
    return batch.reshape(len(batch), -1) @ W


def generator(**over):
    settings = dict(
        loss="cem",
        optimizer="ao_exp_grad",
        gradient="urv",
        loss_kwargs={"mode": "PP", "c": 10.0, "K": 1.0},
        optimizer_kwargs={"l1": 1.0, "l2": 0.0},
        gradient_kwargs={"sample_num": 40},
        num_iter=150,
        save_freq=50,
        seed=1,
    )
    settings.update(over)
    return maxi.ExplanationGenerator(**settings)


def test_the_pertinent_positive_of_a_linear_classifier_is_its_decisive_pixel():
    x = np.ones((4, 4))
    e = generator().explain(x, linear)
    assert e.valid is True
    c = e.candidate
    # class 0 by at least K = 1: 4*c[0,0] - max(c[0,1], 0) >= 1
    assert 4 * c[0, 0] - max(c[0, 1], 0.0) >= 1.0
    rest = np.delete(c.ravel(), 0)
    assert np.abs(rest).max() < 0.05, c
    assert 0.25 <= c[0, 0] <= 1.0


def test_savepoints_keys_shapes_and_dtypes_follow_maxi_and_the_image():
    g = generator(num_iter=120, save_freq=50)
    for dtype in (np.float64, np.float32):
        seen = []

        def model(batch):
            seen.append((batch.dtype, batch.shape))
            return linear(batch)

        x = np.ones((4, 4), dtype=dtype)
        results, meta = g.run(x, model, meta_data={"id": 3})
        assert meta == {"id": 3}
        assert list(results) == ["1", "50", "100", "120"]
        for v in results.values():
            assert v.shape == (4, 4) and v.dtype == dtype
        # the model sees batches of the image's float type: the point and 40 directions
        assert seen[1] == (np.dtype(dtype), (41, 4, 4))
        e = g.last_explanation
        assert list(e.savepoints) == [1, 50, 100, 120]
        assert e.candidate.shape == (4, 4) and e.candidate.dtype == dtype
    # other dtypes are explained in float64
    results, _ = g.run(np.ones((4, 4), dtype=np.int64), linear)
    assert all(v.dtype == np.float64 for v in results.values())


def test_save_freq_inf_keeps_the_first_and_last_update_and_num_iter_defaults_to_30():
    results, _ = generator(num_iter=None, save_freq=float("inf")).run(np.ones((4, 4)), linear)
    assert list(results) == ["1", "30"]


def test_the_record_has_every_update_and_the_model_rows():
    g = generator(num_iter=20)
    e = g.explain(np.ones((4, 4)), linear)
    assert [r["iteration"] for r in e.history] == list(range(1, 21))
    rows = [r["model_rows"] for r in e.history]
    # the image's class (1 row), then 1 + 40 rows per update
    assert rows == [1 + 41 * t for t in range(1, 21)]
    # then the last iterate and the full-strength forms of valid iterates (one row each)
    assert rows[-1] + 1 < e.model_rows <= rows[-1] + 1 + 24
    assert e.model_calls == 1 + 20 + (e.model_rows - rows[-1])  # one row per call after
    assert set(e.history[0]) == {
        "iteration", "round", "attack_loss", "valid", "l1_norm", "l2_norm_sq",
        "objective", "model_rows", "model_calls",
    }
    record = e.to_dict()
    assert record["names"] == {"loss": "cem", "gradient": "urv", "optimizer": "ao_exp_grad"}
    assert record["outcome"]["valid"] is True
    assert record["config"]["gradient"]["sample_num"] == 40
    assert 0 < e.model_seconds <= e.wall_seconds


def test_same_seed_same_bits_other_seed_other_explanation():
    x = np.ones((4, 4))
    a, _ = generator(num_iter=30).run(x, linear)
    b, _ = generator(num_iter=30).run(x, linear)
    c, _ = generator(num_iter=30, seed=2).run(x, linear)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["30"], c["30"])


def test_maxi_class_name_constants_and_classes_name_components():
    assert maxi.TF_CEMLoss == "TF_CEMLoss"

    class AoExpGradOptimizer:  # a class stands for its name, as in MAXi
        pass

    g = maxi.ExplanationGenerator(
        loss=maxi.TF_CEMLoss,
        optimizer=AoExpGradOptimizer,
        gradient=maxi.URVGradientEstimator,
        loss_kwargs={"mode": "PP"},
    )
    assert g.config["optimizer"]["name"] == "ao_exp_grad"
    assert g.config["loss"]["name"] == "cem"


def test_maxi_default_components_and_loss_kwargs():
    g = maxi.ExplanationGenerator()
    c = g.config
    assert (c["loss"]["name"], c["optimizer"]["name"], c["gradient"]["name"]) == (
        "cem", "ada_exp_grad", "urv",
    )
    assert (c["loss"]["mode"], c["loss"]["gamma"], c["loss"]["K"]) == ("PP", 75.0, 10.0)
    assert c["generator"]["num_iter"] == 30


def test_list_components_shows_schemas_and_aliases():
    comps = maxi.list_components()
    urv = next(c for c in comps if c["name"] == "urv")
    assert urv["kind"] == "gradient"
    assert "URVGradientEstimator" in urv["aliases"]
    assert urv["schema"]["properties"]["sample_num"]["default"] == 100
    assert urv["kwarg_aliases"] == {"num_iter": "sample_num"}
    assert {c["kind"] for c in maxi.list_components("optimizer")} == {"optimizer"}
    with pytest.raises(ValueError, match="known kinds"):
        maxi.list_components("lossy")


def test_the_gil_is_released_while_rust_runs():
    # with the model as an ONNX path nothing in the run needs Python: another Python thread
    # keeps running all along (it would not tick at all if the run held the GIL)
    from conftest import MNIST, mnist_test_image

    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        g = generator(num_iter=8, gradient_kwargs={"sample_num": 100})
        started = time.perf_counter()
        g.run(mnist_test_image(2953), MNIST / "mnist_cnn.onnx")
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        t.join()
    during = [x for x in ticks if started <= x <= started + elapsed]
    # a thread sleeping 1 ms per tick: at least a third of the possible ticks happened
    assert len(during) >= elapsed / 0.001 / 3, (len(during), elapsed)


def test_model_objects_run_onnx_in_rust_and_are_callable(tmp_path):
    from conftest import MNIST, mnist_test_image

    cnn = maxi.Model(MNIST / "mnist_cnn.onnx")
    assert cnn.input_shape == [28, 28, 1]
    scores = cnn(mnist_test_image(2953)[None])
    assert scores.shape == (1, 10) and scores.dtype == np.float64
    assert int(np.argmax(scores)) == 5


def test_a_search_over_c_runs_rounds_within_its_row_budget():
    g = generator(num_iter=40, search={"method": "c", "steps": 3, "budget_rows": 3000})
    e = g.explain(np.ones((4, 4)), linear)
    rounds = e.to_dict()["rounds"]
    assert 1 <= len(rounds) <= 3
    assert e.model_rows <= 3000
    with pytest.raises(ValueError, match="search: unknown field `step`"):
        generator(search={"method": "c", "step": 3})

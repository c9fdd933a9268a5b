"""Bad names, kwargs, inputs and models give Python exceptions naming the problem; a failing
model never takes the process down and the generator stays usable."""

import traceback

import numpy as np
import pytest

import maxi
from conftest import MNIST

W = np.zeros((16, 3))
W[0, 0] = 4.0


def linear(batch):
    return batch.reshape(len(batch), -1) @ W


def generator(**over):
    settings = dict(
        loss="cem",
        optimizer="ao_exp_grad",
        gradient="urv",
        loss_kwargs={"mode": "PP", "K": 1.0},
        gradient_kwargs={"sample_num": 8},
        num_iter=5,
    )
    settings.update(over)
    return maxi.ExplanationGenerator(**settings)


X = np.ones((4, 4))


@pytest.mark.parametrize(
    "kind, name, known",
    [
        ("loss", "CEMLos", "known loss components: cem (alias CEMLoss, TF_CEMLoss"),
        ("optimizer", "SGD", "known optimizer components"),
        ("gradient", "URVGradient", "URVGradientEstimator"),
    ],
)
def test_unknown_component_names_list_the_known_ones(kind, name, known):
    with pytest.raises(ValueError, match=f"unknown {kind} `{name}`") as e:
        generator(**{kind: name})
    assert known in str(e.value)


def test_an_unknown_kwarg_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError) as e:
        generator(gradient_kwargs={"samples": 8})
    msg = str(e.value)
    assert "no kwarg `samples`" in msg
    assert "accepted kwargs: batch_mode, batch_num, mu, num_iter, sample_num" in msg


@pytest.mark.parametrize(
    "over, kwarg",
    [
        ({"loss_kwargs": {"mode": "XX"}}, "mode"),
        ({"loss_kwargs": {"mode": "PP", "c": "ten"}}, "c"),
        ({"optimizer_kwargs": {"eta": -1.0}}, "eta"),
        ({"gradient_kwargs": {"sample_num": 6, "batch_num": 4}}, "batch_num"),
    ],
)
def test_a_bad_kwarg_value_is_named_with_the_accepted_kwargs(over, kwarg):
    with pytest.raises(ValueError) as e:
        generator(**over)
    msg = str(e.value)
    assert f"kwarg `{kwarg}`" in msg
    assert "accepted kwargs: " in msg


def test_kwargs_python_cannot_express_as_values_are_named():
    with pytest.raises(ValueError, match=r"loss kwarg `K`: NaN is not finite"):
        generator(loss_kwargs={"mode": "PP", "K": float("nan")})
    with pytest.raises(ValueError, match="loss kwarg `lower`: a value of type `object`"):
        generator(loss_kwargs={"mode": "PP", "lower": object()})
    with pytest.raises(ValueError, match="gradient_kwargs must be a dict"):
        generator(gradient_kwargs=[("sample_num", 8)])
    with pytest.raises(TypeError, match="loss must be a component name"):
        generator(loss=3)


@pytest.mark.parametrize("over", [{"num_iter": 0}, {"save_freq": 0}, {"num_iter": -3}])
def test_bad_settings_are_value_errors(over):
    with pytest.raises(ValueError, match=list(over)[0]):
        generator(**over)


def test_numpy_arrays_and_paths_are_kwargs_too():
    g = generator(loss_kwargs={"mode": "PP", "K": np.float32(1.0), "upper": np.full((4, 4), 0.5)})
    e = g.explain(X, linear)
    assert e.candidate.max() <= 0.5


def test_an_exception_in_the_callable_surfaces_as_itself_with_its_traceback():
    class Broken(Exception):
        pass

    def model_that_fails(batch):
        if len(batch) > 1:
            raise Broken("the model server is down")
        return linear(batch)

    g = generator()
    with pytest.raises(Broken, match="the model server is down") as e:
        g.run(X, model_that_fails)
    frames = [f.name for f in traceback.extract_tb(e.value.__traceback__)]
    assert "model_that_fails" in frames
    # the generator is still usable
    results, _ = g.run(X, linear)
    assert list(results) == ["1", "5"]


def test_an_exception_in_a_callable_autoencoder_surfaces_too():
    def AE(batch):
        raise KeyError("no decoder")

    g = generator(loss_kwargs={"mode": "PP", "K": 1.0, "gamma": 1.0, "AE": AE})
    with pytest.raises(KeyError, match="no decoder"):
        g.run(X, linear)


@pytest.mark.parametrize(
    "model, message",
    [
        (lambda b: linear(b)[0], r"returned shape \[3\] for a batch of shape \[1, 4, 4\]"),
        (lambda b: linear(b)[:1], r"returned shape \[1, 3\] for a batch of shape \[9, 4, 4\]"),
        (lambda b: None, r"returned shape \[\] for a batch"),
        (lambda b: "scores", "must be a numeric array"),
    ],
)
def test_a_wrong_shape_or_type_from_the_callable_is_a_clear_error(model, message):
    with pytest.raises((RuntimeError, ValueError), match=message):
        generator().run(X, model)


def test_nan_from_the_callable_is_a_clear_error():
    def nan_after_a_while(batch):
        out = linear(batch)
        if len(batch) > 1:
            out[2, 1] = np.nan
        return out

    with pytest.raises(RuntimeError, match=r"non-finite value \(NaN\) in row 2"):
        generator().run(X, nan_after_a_while)


def test_bad_images_are_value_errors():
    with pytest.raises(ValueError, match="entry 3 .* is NaN; inputs must be finite"):
        bad = X.copy()
        bad.ravel()[3] = np.nan
        generator().run(bad, linear)
    with pytest.raises(ValueError, match="image must be a numeric array"):
        generator().run("not an image", linear)
    with pytest.raises(ValueError, match="the input has no entries"):
        generator().run(np.zeros((0, 4)), linear)


def test_an_onnx_model_checks_the_image_shape():
    with pytest.raises(ValueError, match=r"shape \[4, 4\] does not match the model's input shape \[28, 28, 1\]"):
        generator().run(X, MNIST / "mnist_cnn.onnx")


def test_bad_inference_calls():
    with pytest.raises(TypeError, match="inference_call must be a callable"):
        generator().run(X, 42)
    with pytest.raises(ValueError, match="no such file"):
        generator().run(X, "missing.onnx")
    with pytest.raises(ValueError, match="unknown model `tflite`"):
        maxi.Model(MNIST / "mnist_cnn.onnx", backend="tflite")
    with pytest.raises(ValueError, match="has no kwarg `thread`"):
        maxi.Model(MNIST / "mnist_cnn.onnx", thread=2)


def test_plugins_load_and_their_components_run(example_plugin):
    names = maxi.load_plugin(example_plugin)
    assert names == ["urv_tutorial"]
    assert maxi.load_plugin(example_plugin) == names  # a second load registers nothing
    listed = maxi.list_components("gradient")
    assert any(c["name"] == "urv_tutorial" and c["origin"].endswith(".so") for c in listed)
    g = generator(gradient="urv_tutorial", gradient_kwargs={"num_iter": 8})
    results, _ = g.run(X, linear)
    assert list(results) == ["1", "5"]
    with pytest.raises(ValueError, match="gradient `urv_tutorial` has no kwarg `sample_num`"):
        generator(gradient="urv_tutorial", gradient_kwargs={"sample_num": 8})


def test_a_missing_plugin_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="plugin"):
        maxi.load_plugin(tmp_path / "nope.so")


def test_ctrl_c_stops_a_run_in_rust_with_keyboard_interrupt():
    import signal
    import subprocess
    import sys
    import time as _time

    # the child restores Python's own SIGINT handler: a shell that starts CI in the background
    # hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt
    script = f"""
import signal, sys, numpy as np, maxi
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {str(MNIST.parent.parent / "crates" / "maxi-py" / "tests")!r})
from conftest import mnist_test_image
g = maxi.ExplanationGenerator(loss="cem", optimizer="ao_exp_grad", gradient="urv",
    loss_kwargs={{"mode": "PP"}}, num_iter=100000)
print("running", flush=True)
try:
    g.run(mnist_test_image(2953), {str(MNIST / "mnist_cnn.onnx")!r})
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "running"
    _time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert out.strip() == "interrupted"
    assert p.returncode == 0

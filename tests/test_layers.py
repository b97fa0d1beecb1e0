"""SugarReLU and activation_layer inside real Keras models, on the active backend."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers, ops

import keras_relu
from tests.backend_grad import grad
from tests.conftest import BACKEND

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mlp(activation="sugar_bsilu", width=16, depth=2):
    model = keras.Sequential([keras.Input((8,))])
    for _ in range(depth):
        model.add(layers.Dense(width))
        model.add(keras_relu.activation_layer(activation))
    model.add(layers.Dense(3, activation="softmax"))
    return model


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")
    return x, y


@pytest.mark.parametrize(
    "conv, shape",
    [(None, (4, 6)), (layers.Conv1D, (2, 9, 3)), (layers.Conv2D, (2, 7, 7, 3)),
     (layers.Conv3D, (2, 5, 5, 5, 3))],
)
def test_any_rank_keeps_shape_and_gets_surrogate_gradient(conv, shape, rng):
    x = rng.standard_normal(shape).astype("float32")
    if conv is not None:
        x = ops.convert_to_numpy(conv(4, 3, padding="same")(x))
    layer = keras_relu.SugarReLU("nelu", a=0.5)
    assert layer.compute_output_shape(x.shape) == x.shape
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), np.maximum(x, 0))
    g = grad(layer, x)
    neg = x <= 0
    np.testing.assert_allclose(g[neg], 2 * 0.5 * x[neg] / (1 + x[neg] ** 2) ** 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(g[~neg], 1.0)


def test_sequential_functional_and_subclassed_models_agree():
    x, _ = _data(5)
    dense = layers.Dense(6, kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-3.0))
    sequential = keras.Sequential([keras.Input((8,)), dense, keras_relu.SugarReLU()])
    inputs = keras.Input((8,))
    functional = keras.Model(inputs, keras_relu.SugarReLU()(dense(inputs)))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.act = keras_relu.SugarReLU()

        def call(self, x):
            return self.act(dense(x))

    want = np.maximum(x.sum(axis=1, keepdims=True) - 3.0, 0) * np.ones((1, 6))
    for model in (sequential, functional, Sub()):
        np.testing.assert_allclose(ops.convert_to_numpy(model(x)), want, rtol=1e-5, atol=1e-6)


def test_dead_units_get_gradient_only_with_sugar():
    """A Dense layer whose units are all dead: ReLU gives its kernel zero gradient, SUGAR does not."""
    x, _ = _data(16)
    grads = {}
    for act in ("relu", "sugar_bsilu"):
        dense = layers.Dense(4, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(-3.0))
        model = keras.Sequential([keras.Input((8,)), dense, keras_relu.activation_layer(act), layers.Dense(1)])
        kernel = lambda k: ops.sum(model.layers[2](model.layers[1](ops.matmul(ops.convert_to_tensor(x), k) + dense.bias)))
        grads[act] = np.abs(grad(kernel, ops.convert_to_numpy(dense.kernel))).sum()
    assert grads["relu"] == 0.0
    assert grads["sugar_bsilu"] > 1e-3


def test_get_config_round_trip():
    layer = keras_relu.SugarReLU("bsilu", a=2.5, name="act", dtype="float32")
    config = layer.get_config()
    assert config["surrogate"] == "bsilu" and config["a"] == 2.5 and config["name"] == "act"
    clone = keras_relu.SugarReLU.from_config(config)
    assert (clone.surrogate, clone.params, clone.name) == ("bsilu", {"a": 2.5}, "act")
    json.dumps(keras.saving.serialize_keras_object(layer))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, keras_relu.SugarReLU) and restored.params == {"a": 2.5}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_policies(policy):
    x, y = _data(32)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _mlp("sugar_bsilu")
        act = model.layers[1]
        assert act.compute_dtype == policy.split("_")[1]
        assert ops.convert_to_numpy(ops.cast(act(ops.convert_to_tensor(x)), "float32")).min() >= 0
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        losses = [model.train_on_batch(x, y) for _ in range(3)]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(losses).all()
    assert all(np.isfinite(ops.convert_to_numpy(w)).all() for w in model.trainable_weights)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_learns(jit_compile):
    if jit_compile and BACKEND == "torch":
        pytest.skip("jit_compile on torch has an open Keras bug; torch stays eager")
    x, y = _data(256)
    model = _mlp("sugar_bsilu", width=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.6 * loss[0]
    assert history.history["accuracy"][-1] > 0.85


@pytest.mark.parametrize("name", list(keras_relu.ACTIVATIONS))
def test_every_activation_builds_trains_and_round_trips(name, tmp_path):
    x, y = _data(32)
    model = _mlp(name)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    before = [ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    changed = [not np.array_equal(b, ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights)]
    assert all(changed[:4])  # both hidden Dense layers learned
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-7)


_LOAD = """
import os, sys, numpy as np, keras, keras_relu
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[2], keras.ops.convert_to_numpy(model(np.load(sys.argv[3]))))
"""


def test_saved_model_loads_on_the_other_backends(tmp_path):
    x, y = _data(64)
    inputs = keras.Input((8,))
    h = keras_relu.SugarReLU("nelu", a=0.1)(layers.Dense(16)(inputs))
    h = keras_relu.SugarReLU("bsilu")(layers.Dense(16)(h))
    model = keras.Model(inputs, layers.Dense(3)(h))
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, np.eye(3)[y], epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    want = ops.convert_to_numpy(model(x))
    for other in {"tensorflow", "jax", "torch"} - {BACKEND}:
        out = tmp_path / f"{other}.npy"
        env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "m.keras"), str(out), str(tmp_path / "x.npy")],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-6, err_msg=other)


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown activation 'swish2'.*relu, leaky_relu, prelu.*sugar_bsilu"):
        keras_relu.activation_layer("swish2")
    with pytest.raises(ValueError, match="Unknown surrogate"):
        keras_relu.SugarReLU("swish2")


def test_bad_parameters_fail_at_construction():
    with pytest.raises(TypeError, match="'a' must be a real number"):
        keras_relu.SugarReLU("bsilu", a="big")
    with pytest.raises(ValueError, match="Unknown parameter.*'nelu'.*Valid parameters: a"):
        keras_relu.activation_layer("sugar_nelu", alpha=0.1)


def test_activation_layers_are_keras_own_and_fresh():
    a, b = keras_relu.activation_layer("prelu"), keras_relu.activation_layer("prelu")
    assert a is not b and type(a) is layers.PReLU
    assert type(keras_relu.activation_layer("elu")) is layers.ELU
    leaky = keras_relu.activation_layer("leaky_relu")
    assert type(leaky) is layers.LeakyReLU and leaky.negative_slope == 0.01
    relu = keras_relu.activation_layer("relu")
    assert type(relu) is layers.Activation and relu.activation is keras.activations.relu


def test_activation_layer_takes_a_layer_name():
    layer = keras_relu.activation_layer("sugar_nelu", name="act1", a=0.2)
    assert (layer.name, layer.params) == ("act1", {"a": 0.2})
    assert keras_relu.activation_layer("relu", name="act2").name == "act2"

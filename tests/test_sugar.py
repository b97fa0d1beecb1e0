"""The sugar op: ReLU forward, exact surrogate derivative backward, on the active backend."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_relu
from keras_relu import surrogates
from tests.backend_grad import grad

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf)
_erfc = np.vectorize(math.erfc)


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# Independent float64 references for s'(x), written from the textbook formulas.
REFERENCE = {
    "bsilu": lambda x: _sig(x) + (x + 1.67) * _sig(x) * _sig(-x),
    "nelu": lambda x: np.where(x > 0, 1.0, 2 * 0.05 * x / (1 + x**2) ** 2),
    "elu": lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0))),
    "gelu": lambda x: 0.5 * _erfc(-x / math.sqrt(2)) + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi),
    "silu": lambda x: _sig(x) * (1 + x * _sig(-x)),
    "leaky_relu": lambda x: np.where(x > 0, 1.0, 0.01),
    "mish": lambda x: np.tanh(np.logaddexp(0, x))
    + x * _sig(x) * 4 / (np.exp(np.logaddexp(0, x)) + np.exp(-np.logaddexp(0, x))) ** 2,
}
BUILT_IN = tuple(REFERENCE)
AT_ZERO = {"bsilu": 0.5 + 1.67 / 4, "nelu": 0.0, "elu": 1.0, "selu": SELU_SCALE * SELU_ALPHA,
           "gelu": 0.5, "silu": 0.5, "leaky_relu": 0.01, "mish": math.tanh(math.log(2))}
LARGE = np.array([-1e4, -1e3, -80.0, -30.0, 30.0, 80.0, 1e3, 1e4])


def _inputs(rng):
    return np.concatenate([rng.uniform(-12, 12, 2000), np.linspace(-20, 20, 801), [0.0, -0.0], LARGE]).astype("float32")


def test_builtin_surrogates_are_registered():
    assert set(BUILT_IN) == set(keras_relu.SURROGATES)


@pytest.mark.parametrize("name", BUILT_IN)
def test_forward_is_relu_bit_for_bit(name, rng):
    x = (rng.standard_normal((64, 33)) * 10).astype("float32")
    x[0, :8] = [0.0, -0.0, 1e4, -1e4, 1e-38, -1e-38, np.inf, -np.inf]
    got = ops.convert_to_numpy(keras_relu.sugar(x, name))
    want = ops.convert_to_numpy(ops.relu(x))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


@pytest.mark.parametrize("name", BUILT_IN)
def test_gradient_is_the_analytic_derivative(name, rng):
    x = _inputs(rng)
    upstream = rng.uniform(0.5, 2.0, x.shape).astype("float32")
    got = grad(lambda v: ops.multiply(keras_relu.sugar(v, name), upstream), x)
    want = upstream.astype("float64") * REFERENCE[name](x.astype("float64"))
    # Relative 1e-6. Where s' crosses or nears zero its terms cancel, and float32
    # rounding of those O(1) terms (a few ulps of 2**-24) sets an absolute floor.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2.5e-7)
    large = np.abs(x) >= 1e3
    np.testing.assert_allclose(got[large], want[large], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", BUILT_IN)
def test_gradient_at_zero_is_exact(name):
    got = grad(lambda v: keras_relu.sugar(v, name), np.zeros(3, "float32"))
    assert got.tolist() == [np.float32(AT_ZERO[name])] * 3


@pytest.mark.parametrize("name", BUILT_IN)
def test_derivative_matches_finite_differences_of_the_value(name, rng):
    spec = keras_relu.get_surrogate(name)
    x = rng.uniform(-6, 6, 200).astype("float32")
    x = x[np.abs(x) > 0.05]  # away from the kinks of nelu / elu / leaky_relu / selu
    h = np.float32(1e-2)  # float32 everywhere (JAX has no float64 by default)
    value = lambda v: ops.convert_to_numpy(spec.value(ops.convert_to_tensor(v), **spec.defaults))
    slope = ops.convert_to_numpy(spec.derivative(ops.convert_to_tensor(x), **spec.defaults))
    central = (value(x + h) - value(x - h)) / (2 * h)
    np.testing.assert_allclose(slope, central, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", BUILT_IN)
def test_half_precision_gradient_is_finite_and_close(name, dtype, rng):
    x32 = np.concatenate([rng.uniform(-8, 8, 500), [0.0], LARGE]).astype("float32")
    got = grad(lambda v: keras_relu.sugar(v, name), x32, dtype)
    assert np.isfinite(got).all()
    x_rounded = ops.convert_to_numpy(ops.cast(ops.cast(x32, dtype), "float32"))
    want = REFERENCE[name](x_rounded.astype("float64"))
    tol = 1e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 1e-2)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="reads XLA's compiled program")
def test_jax_inference_compiles_to_the_program_of_relu():
    """Inference costs what ReLU costs: the compiled forward has the same operations."""
    import re

    import jax

    def compiled_ops(activation):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64), activation,
                                  keras.layers.Dense(64), keras.layers.Dense(10)])
        forward = jax.jit(lambda w, x: model.stateless_call(w, [], x, training=False)[0])
        weights = [v.value for v in model.trainable_variables]
        text = forward.lower(weights, np.ones((8, 32), "float32")).compile().as_text()
        return sorted(re.findall(r"= \S+ ([\w-]+)\(", text))

    relu = compiled_ops(keras.layers.Activation("relu"))
    assert len(relu) > 5
    assert compiled_ops(keras_relu.SugarReLU("bsilu")) == relu


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="reads a TensorFlow graph")
def test_tensorflow_inference_graph_is_that_of_relu():
    """No tape, no custom gradient: `predict`'s graph has ReLU's operations, so TensorFlow's
    optimizer fuses the activation into the layer before it; under a tape, the surrogate's."""
    import tensorflow as tf

    def graph_ops(activation):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64), activation,
                                  keras.layers.Dense(10)])
        forward = tf.function(lambda x: model(x, training=False))
        graph = forward.get_concrete_function(tf.TensorSpec([None, 32])).graph
        return sorted(op.type for op in graph.get_operations())

    relu = graph_ops(keras.layers.Activation("relu"))
    assert "Relu" in relu
    assert graph_ops(keras_relu.SugarReLU("bsilu")) == relu
    x = tf.constant([[-1.0, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = keras_relu.sugar(x, "bsilu")
    assert tape.gradient(y, x).numpy()[0, 0] > 0  # the surrogate's slope where relu's is 0


def test_parameters_change_the_gradient():
    x = np.array([-1.0, 0.0, 1.0], "float32")
    got = grad(lambda v: keras_relu.sugar(v, "bsilu", a=3.0), x)
    s = _sig(x.astype("float64"))
    np.testing.assert_allclose(got, s + (x + 3.0) * s * (1 - s), rtol=1e-6)


@pytest.fixture
def softsign_surrogate():
    spec = keras_relu.register_surrogate(
        "test_softsign",
        derivative=lambda x, k: k / ops.square(1.0 + ops.abs(x)),
        value=lambda x, k: k * x / (1.0 + ops.abs(x)),
        defaults={"k": 1.0},
    )
    yield spec
    surrogates._REGISTRY.pop("test_softsign")


def test_user_registered_surrogate(softsign_surrogate, rng):
    assert "test_softsign" in keras_relu.SURROGATES
    assert "sugar_test_softsign" in keras_relu.ACTIVATIONS
    x = _inputs(rng)
    got = grad(lambda v: keras_relu.sugar(v, "test_softsign", k=2.0), x)
    np.testing.assert_allclose(got, 2.0 / (1 + np.abs(x.astype("float64"))) ** 2, rtol=1e-6)
    layer = keras_relu.activation_layer("sugar_test_softsign", k=2.0)
    assert isinstance(layer, keras_relu.SugarReLU)
    np.testing.assert_allclose(grad(layer, x), got, rtol=0)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), np.maximum(x, 0))


def test_registration_rejects_duplicates_and_bad_names():
    with pytest.raises(ValueError, match="already registered"):
        keras_relu.register_surrogate("bsilu", lambda x: x)
    with pytest.raises(ValueError, match="identifier"):
        keras_relu.register_surrogate("not a name", lambda x: x)
    with pytest.raises(TypeError, match="real number"):
        keras_relu.register_surrogate("bad_default", lambda x, k: x, defaults={"k": "1"})
    assert "bad_default" not in keras_relu.SURROGATES


def test_unknown_surrogate_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown surrogate 'nope'.*bsilu, nelu"):
        keras_relu.sugar(np.ones(2, "float32"), "nope")


@pytest.mark.parametrize(
    "params, error, message",
    [({"a": "1.67"}, TypeError, "must be a real number"),
     ({"a": True}, TypeError, "must be a real number"),
     ({"a": float("nan")}, ValueError, "must be finite"),
     ({"b": 1.0}, ValueError, "Unknown parameter.*Valid parameters: a")],
)
def test_bad_parameters_fail_before_any_computation(params, error, message):
    with pytest.raises(error, match=message):
        keras_relu.sugar(np.ones(2, "float32"), "bsilu", **params)


def test_symbolic_functional_use():
    inputs = keras.Input((5,))
    outputs = keras_relu.sugar(keras.layers.Dense(4)(inputs), "nelu")
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype("float32")
    assert model(x).shape == (3, 4)
    assert (ops.convert_to_numpy(model(x)) >= 0).all()

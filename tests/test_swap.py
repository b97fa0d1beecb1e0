"""`replace_activations` on keras.applications networks and a Functional model of our own:
predictions bit for bit, gradients where SUGAR changes them, sites counted independently,
skipped sites with reasons, the saved copy on another backend, the user's model untouched."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers, ops

import keras_relu
from keras_relu.graph import Graph
from tests.backend_grad import weight_grads
from tests.conftest import BACKEND, ROOT

APPLICATIONS = {"ResNet50": keras.applications.ResNet50, "VGG16": keras.applications.VGG16,
                "DenseNet121": keras.applications.DenseNet121,
                "MobileNetV2": keras.applications.MobileNetV2}
OTHER = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]
# A gradient check of a whole network costs up to a minute on JAX (compiling its backward):
# each network's runs on one pass, most on TensorFlow's (CI's shortest); ours on every pass.
GRADIENT_PASS = {"ResNet50": "tensorflow", "DenseNet121": "tensorflow", "VGG16": "torch",
                 "MobileNetV2": "jax"}


def own_model():
    """Nested Sequential, a shared Dense, `activation="relu"` on Dense and Conv layers,
    Activation and ReLU layers, a ReLU6 gate and a second output, ReLU; every site upstream of the
    last one."""
    block = keras.Sequential([keras.Input((16,)), layers.Dense(16, activation="relu", name="s_dense"),
                              layers.ReLU(name="s_relu"), layers.Dense(16, name="s_out")],
                             name="block")
    shared = layers.Dense(16, activation="relu", name="shared")
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="conv_a")(inputs)
    x = layers.BatchNormalization(name="bn")(layers.Conv2D(16, 3, name="conv_b")(x))
    x = layers.Activation("relu", name="conv_b_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Add(name="merge")([shared(x), shared(layers.Dense(16, name="pre")(x))])
    gate = layers.ReLU(6.0, name="gate")(x + 3.0) * (1.0 / 6.0)
    x = layers.Multiply(name="gated")([block(x), gate])
    x = layers.Dense(16, activation="relu", name="last")(x)
    outputs = [layers.Dense(3, activation="softmax", name="out")(x),
               layers.Dense(2, activation="relu", name="aux")(x)]
    return keras.Model(inputs, outputs, name="own")


def plain_relu_sites(model, outputs=None):
    """Plain-ReLU layers found by walking `model.layers` (not the swap's graph walk)."""
    outputs = {model.get_layer(n).name for n in model.output_names} if outputs is None else outputs
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += plain_relu_sites(layer, set())
        elif layer.name in outputs:
            continue
        elif isinstance(layer, layers.ReLU):
            if layer.max_value is None and not layer.negative_slope and not layer.threshold:
                found.append(layer.name)
        elif getattr(layer, "activation", None) is keras.activations.relu:
            found.append(layer.name)
    return found


def leaves(model):
    """The model's layers in graph order, nested models flattened."""
    return [leaf for layer in model.layers
            for leaf in (leaves(layer) if isinstance(layer, keras.Model) else [layer])]


def flat(outputs):
    """A model's outputs (one or several) as one vector."""
    return np.concatenate([np.ravel(ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)])


def snapshot(model):
    return model.to_json(), [np.array(w) for w in model.get_weights()]


@pytest.fixture(scope="module", params=[*APPLICATIONS, "own"])
def case(request):
    keras.utils.set_random_seed(1)
    if request.param == "own":
        model = own_model()
        x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype("float32")
    else:
        model = APPLICATIONS[request.param](weights=None, input_shape=(32, 32, 3), classes=3)
        x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    before = snapshot(model)
    swapped = keras_relu.replace_activations(model, "sugar_bsilu")
    yield request.param, model, swapped, x, before
    keras.utils.clear_session()


def test_predictions_equal_bit_for_bit_and_user_model_unchanged(case):
    name, model, swapped, x, before = case
    np.testing.assert_array_equal(flat(swapped.predict(x, verbose=0)),
                                  flat(model.predict(x, verbose=0)))
    json_text, weights = snapshot(model)
    assert json_text == before[0]
    assert all(np.array_equal(a, b) for a, b in zip(weights, before[1]))
    assert len(swapped.get_weights()) == len(weights)
    for old, new in zip(model.get_weights(), swapped.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_sites_counted_independently_names_and_flags_kept(case):
    name, model, swapped, _, _ = case
    report = swapped.swap_report
    sites = plain_relu_sites(model)
    assert len(report.replaced) == len(sites), report
    assert sorted(s.path.split("/")[-1] for s in report.replaced) == sorted(sites)
    assert plain_relu_sites(swapped) == []  # none left
    kept = {layer.name: layer.trainable for layer in leaves(model)}
    new = {layer.name: layer.trainable for layer in leaves(swapped)}
    added = {f"{s.path.split('/')[-1]}_activation" for s in report.replaced
             if s.kind.startswith(("Dense", "Conv"))}
    assert set(new) == set(kept) | added
    assert all(new[n] == kept[n] for n in kept)
    assert [t.name for t in swapped.inputs] != [] and swapped.layers[0].name == model.layers[0].name
    assert swapped.output_names == model.output_names
    expected_skips = {"ResNet50": 0, "VGG16": 0, "DenseNet121": 0, "MobileNetV2": 35, "own": 2}
    assert len(report.skipped) == expected_skips[name], report
    if name == "MobileNetV2":
        assert {s.kind for s in report.skipped} == {"ReLU(max_value=6)"}
        assert all("ReLU6 is not plain ReLU" in s.outcome for s in report.skipped)
    if name == "own":
        outcomes = {s.path: s.outcome for s in report.skipped}
        assert "gates another path" in outcomes["gate"] and "ReLU6" in outcomes["gate"]
        assert "output layer" in outcomes["aux"]
        assert swapped.get_layer("block").get_layer("s_relu").__class__ is keras_relu.SugarReLU
        # the shared Dense and its new activation: one layer each, called twice
        calls = Graph(swapped).calls
        assert calls[id(swapped.get_layer("shared"))] == 2
        assert calls[id(swapped.get_layer("shared_activation"))] == 2
        assert [type(l).__name__ for l in swapped.layers].count("SugarReLU") == 4
        assert report.to_dict()["replaced"][0].keys() == {"path", "kind", "outcome"}


def test_gradients_differ_exactly_upstream_of_replaced_sites(case):
    name, model, swapped, x, _ = case
    if GRADIENT_PASS.get(name, BACKEND) != BACKEND:
        pytest.skip(f"{name}'s gradients are checked on the {GRADIENT_PASS[name]} pass")
    rng = np.random.default_rng(2)
    w = [rng.standard_normal(t.shape[1:]).astype("float32") for t in model.outputs]
    old, new = weight_grads(model, x, w), weight_grads(swapped, x, w)
    owners = {id(v): layer.name for layer in leaves(swapped) for v in layer.trainable_variables}
    order = [layer.name for layer in leaves(swapped)]
    sugar = [i for i, layer in enumerate(leaves(swapped))
             if isinstance(layer, keras_relu.SugarReLU)]
    last = sugar[-1] if sugar else -1
    upstream = downstream = 0
    for v, g_old, g_new in zip(swapped.trainable_variables, old, new):
        if order.index(owners[id(v)]) < last:  # its gradient passes a SUGAR site
            assert not np.allclose(g_old, g_new, rtol=1e-3, atol=1e-7), v.path
            upstream += 1
        else:  # nothing but ReLU's unchanged forward between it and the output
            np.testing.assert_allclose(g_new, g_old, rtol=1e-5, atol=1e-7, err_msg=v.path)
            downstream += 1
    assert downstream >= 1 and (upstream >= 1) == bool(sugar)


_LOAD = """
import sys, numpy as np, keras, keras_relu
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
kinds = sorted(type(l).__name__ for l in model.layers)
outputs = keras.tree.flatten(model(np.load(sys.argv[3]), training=False))
np.save(sys.argv[2], np.concatenate([np.ravel(keras.ops.convert_to_numpy(o)) for o in outputs]))
print(",".join(kinds))
"""


@pytest.mark.parametrize("name", ["own", {"tensorflow": "ResNet50", "jax": "VGG16",
                                          "torch": "DenseNet121"}[BACKEND]])
def test_saved_copy_loads_on_another_backend(name, tmp_path):
    keras.utils.set_random_seed(1)
    model = own_model() if name == "own" else APPLICATIONS[name](
        weights=None, input_shape=(32, 32, 3), classes=3)
    x = np.random.default_rng(0).random((2, *model.input.shape[1:])).astype("float32")
    swapped = keras_relu.replace_activations(model)
    swapped.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, KERAS_BACKEND=OTHER, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "m.keras"),
                           str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert proc.stdout.split()[-1] == ",".join(sorted(type(l).__name__ for l in swapped.layers))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), flat(swapped(x, training=False)),
                               rtol=1e-4, atol=1e-5)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(4, activation="relu")

    def call(self, x):
        return self.dense(x)


def test_subclassed_model_is_refused_with_what_to_do():
    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed Subclassed.*Functional model.*builder"):
        keras_relu.replace_activations(model)


def test_relu6_is_skipped_or_replaced_when_asked():
    inputs = keras.Input((4,))
    hidden = layers.ReLU(6.0, name="r6")(layers.Dense(8, name="d")(inputs))
    model = keras.Model(inputs, layers.Dense(2, name="out")(hidden))
    kept = keras_relu.replace_activations(model)
    assert [s.path for s in kept.swap_report.skipped] == ["r6"] and not kept.swap_report.replaced
    assert isinstance(kept.get_layer("r6"), layers.ReLU)
    taken = keras_relu.replace_activations(model, relu6=True)
    assert [s.path for s in taken.swap_report.replaced] == ["r6"]
    assert isinstance(taken.get_layer("r6"), keras_relu.SugarReLU)


def test_targets_options_and_reinitialisation():
    model = own_model()
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype("float32")
    leaky = keras_relu.replace_activations(model, "leaky_relu", negative_slope=0.2)
    assert isinstance(leaky.get_layer("conv_b_relu"), layers.LeakyReLU)
    assert leaky.get_layer("conv_b_relu").negative_slope == pytest.approx(0.2)
    nelu = keras_relu.replace_activations(model, keras_relu.SugarReLU("nelu", a=0.1),
                                          where=lambda layer: layer.name != "conv_a")
    assert nelu.get_layer("conv_b_relu").params == {"a": 0.1}
    assert "conv_a_activation" not in [l.name for l in nelu.layers]
    assert any(s.path == "conv_a" and "where" in s.outcome for s in nelu.swap_report.skipped)
    fresh = keras_relu.replace_activations(model, initializer="rai")
    assert isinstance(fresh.get_layer("conv_a").kernel_initializer, keras_relu.RandomizedAsymmetric)
    assert not np.array_equal(ops.convert_to_numpy(fresh.get_layer("conv_a").kernel),
                              ops.convert_to_numpy(model.get_layer("conv_a").kernel))
    assert [o.shape for o in fresh.predict(x, verbose=0)] == [(4, 3), (4, 2)]
    with pytest.raises(ValueError, match="Unknown activation 'swish9'.*sugar_bsilu"):
        keras_relu.replace_activations(model, "swish9")
    with pytest.raises(ValueError, match="keras.Model"):
        keras_relu.replace_activations(layers.Dense(3))


class ReluBlock(layers.Layer):
    """A custom layer that calls ReLU in its own code: the swap cannot see inside it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(8)

    def call(self, x):
        return ops.relu(self.dense(x))


def test_custom_layers_and_recurrent_layers_are_skipped_with_reasons():
    inputs = keras.Input((5, 4))
    x = layers.LSTM(8, activation="relu", return_sequences=False, name="lstm")(inputs)
    x = ReluBlock(name="block")(x)
    x = layers.Dense(8, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, layers.Dense(2, name="out")(x))
    swapped = keras_relu.replace_activations(model)
    assert [s.path for s in swapped.swap_report.replaced] == ["hidden"]
    reasons = {s.path: s.outcome for s in swapped.swap_report.skipped}
    assert "recurrent" in reasons["lstm"] and "custom layer" in reasons["block"]
    x_in = np.random.default_rng(0).standard_normal((3, 5, 4)).astype("float32")
    np.testing.assert_array_equal(swapped.predict(x_in, verbose=0), model.predict(x_in, verbose=0))
    text = str(swapped.swap_report)
    assert text.splitlines()[0] == "1 ReLU site replaced by sugar_bsilu, 2 skipped"
    assert "skipped: a ReLU inside a custom layer's own code is not changed" in text


@pytest.mark.skipif(BACKEND != "tensorflow", reason="graph logic: runs on the tensorflow pass")
def test_mobilenetv3_gates_are_skipped_and_the_signals_they_gate_swapped():
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=3,
                                                include_preprocessing=False)
    report = keras_relu.replace_activations(model).swap_report
    gates = [s for s in report.skipped if "gates another path" in s.outcome]
    assert len(gates) == len(report.skipped) == 9  # hard-sigmoid ReLU6s, each a gate
    assert {s.kind for s in gates} == {"ReLU(max_value=6)"}
    replaced = {s.path for s in report.replaced}
    # re_lu feeds a squeeze-and-excitation block: the gate made from it multiplies it
    assert "re_lu" in replaced and "expanded_conv_squeeze_excite_relu" in replaced
    assert len(replaced) == len(plain_relu_sites(model)) == 14

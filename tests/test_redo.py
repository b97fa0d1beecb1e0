"""ReDo on real Keras models and optimizers, in compiled training loops, on each backend."""

import warnings

import keras
import numpy as np
import pytest

import keras_relu
from keras_relu import ReDo, neuron_stats
from test_neurons import NCHW

JIT = keras.backend.backend() != "torch"  # torch's jit_compile has an open Keras bug


def _force(layer, dead, alive=1.0, kernel_scale=1.0):
    """Bias -100 on the `dead` units, `alive` on the others (all alive for a small
    enough `kernel_scale`)."""
    kernel, bias = layer.get_weights()
    bias = np.full_like(bias, alive)
    bias[list(dead)] = -100.0
    layer.set_weights([kernel * kernel_scale, bias])


def _data(rng, n=256):
    return (rng.normal(size=(n, 8, 8, 3)).astype("float32"),
            rng.normal(size=(n, 4)).astype("float32"))


def _two_branch_model():
    """A conv branch (8 channels, GAP) and a dense branch (10 units), concatenated
    into the output layer: both see signed inputs, so re-initialised units live."""
    inp = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(8, 3, name="conv")
    a = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU(name="conv_relu")(conv(inp)))
    dense = keras.layers.Dense(10, name="dense")
    b = keras.layers.ReLU(name="dense_relu")(dense(keras.layers.Flatten()(inp)))
    b = keras.layers.Dropout(0.1)(b)
    out = keras.layers.Dense(4, name="out")(keras.layers.Concatenate()([a, b]))
    return keras.Model(inp, out), conv, dense


def _slots(optimizer, variable):
    """The optimizer's slot variables of `variable`, found by Keras' slot names."""
    prefix = variable.path.replace("/", "_") + "_"
    return [v for v in optimizer.variables if v.path.split("/")[-1].startswith(prefix)]


def _numpy(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


OPTIMIZERS = {"adam": lambda: keras.optimizers.Adam(1e-3),
              "adamw": lambda: keras.optimizers.AdamW(1e-3),
              "sgd_momentum": lambda: keras.optimizers.SGD(1e-2, momentum=0.9)}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_one_recycle_revives_dead_units_keeps_predictions_resets_their_slots(rng, optimizer):
    x, y = _data(rng)
    model, conv, dense = _two_branch_model()
    model.compile(OPTIMIZERS[optimizer](), "mse")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # slots are non-zero now
    _force(conv, [1, 6])
    _force(dense, [2, 5, 7])
    out = model.get_layer("out")
    stats = neuron_stats(model, x)
    assert stats.layers["conv_relu"].dead_units == (1, 6)
    assert stats.layers["dense_relu"].dead_units == (2, 5, 7)
    weights = [conv.kernel, conv.bias, dense.kernel, dense.bias, out.kernel, out.bias]
    slots = [_slots(model.optimizer, w) for w in weights]
    assert all(len(s) == (1 if optimizer == "sgd_momentum" else 2) for s in slots)
    before, slots_before = _numpy(weights), [_numpy(s) for s in slots]
    assert all(np.abs(s).sum() > 0 for group in slots_before for s in group)
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    predicted = model.predict(x, verbose=0)

    redo = ReDo(probe=x)
    redo.set_model(model)
    redo.on_train_begin()
    assert redo.recycle() == {"conv_relu": (1, 6), "dense_relu": (2, 5, 7)}

    np.testing.assert_allclose(model.predict(x, verbose=0), predicted, atol=1e-6)
    stats = neuron_stats(model, x)
    assert stats.layers["conv_relu"].dead_count == 0
    assert stats.layers["dense_relu"].dead_count == 0
    # the entries that changed: conv filters 1, 6; dense columns 2, 5, 7; their biases;
    # rows 1, 6 (conv channels) and 8 + 2, 5, 7 (dense units, after the concat) of `out`
    changed = [np.s_[..., [1, 6]], np.s_[[1, 6]], np.s_[:, [2, 5, 7]], np.s_[[2, 5, 7]],
               np.s_[[1, 6, 10, 13, 15], :], None]
    after, slots_after = _numpy(weights), [_numpy(s) for s in slots]
    for old, new, old_slots, new_slots, where in zip(before, after, slots_before,
                                                     slots_after, changed):
        mask = np.zeros(old.shape, bool)
        if where is not None:
            mask[where] = True
        np.testing.assert_array_equal(new[~mask], old[~mask])
        for old_slot, new_slot in zip(old_slots, new_slots):
            np.testing.assert_array_equal(new_slot[~mask], old_slot[~mask])
            assert not new_slot[mask].any()
    assert not after[4][[1, 6, 10, 13, 15]].any()  # outgoing weights cut
    assert not after[1][[1, 6]].any() and not after[3][[2, 5, 7]].any()  # biases 0
    assert np.abs(after[0][..., [1, 6]]).min() > 0 and np.abs(after[2][:, [2, 5, 7]]).min() > 0
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == step

    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_fit_with_the_callback_recycles_and_logs(rng):
    x, y = _data(rng)
    model, conv, dense = _two_branch_model()
    model.compile(keras.optimizers.Adam(1e-3), "mse", jit_compile=JIT)
    monitor = keras_relu.DeadNeuronMonitor(probe=x, per_layer=True)
    redo = ReDo(probe=x, per_layer=True)
    for _ in range(2):  # the second fit reuses both callbacks: their state starts afresh
        _force(conv, [1, 6])
        _force(dense, [2, 5, 7])
        history = model.fit(x, y, epochs=3, batch_size=32, verbose=0,
                            callbacks=[monitor, redo]).history
        assert history["recycled"][0] == 5
        assert history["recycled/conv_relu"][0] == 2 and history["recycled/dense_relu"][0] == 3
        assert redo.recycles[0] == (0, None, {"conv_relu": (1, 6), "dense_relu": (2, 5, 7)})
        assert sum(history["recycled"]) == sum(len(u) for _, _, c in redo.recycles
                                               for u in c.values())
        # the monitor, before ReDo in the list, saw the units training left dead
        assert history["dead_fraction/dense_relu"][:2] == [pytest.approx(0.3), 0.0]
        assert history["dead_fraction/conv_relu"][:2] == [0.25, 0.0]
        assert np.all(np.isfinite(history["loss"]))
    assert neuron_stats(model, x).dead_count == 0


def test_every_steps_takes_effect_inside_the_compiled_training_loop(rng):
    """On JAX the trainer keeps the state outside the variables during an epoch: a change
    the next steps did not see would be overwritten by their state at the epoch's end."""
    x, y = _data(rng)
    model, conv, dense = _two_branch_model()
    model.compile(keras.optimizers.Adam(1e-3), "mse", jit_compile=JIT)
    _force(conv, [1, 6])
    _force(dense, [2, 5, 7])
    redo = ReDo(probe=x, every_steps=3)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[redo])  # 8 steps
    assert [(epoch, step) for epoch, step, _ in redo.recycles][:1] == [(0, 3)]
    assert redo.recycles[0][2] == {"conv_relu": (1, 6), "dense_relu": (2, 5, 7)}
    assert all(step in (3, 6) for _, step, _ in redo.recycles)
    # 5 steps trained on from the recycled state: biases near 0, not -100 ...
    assert np.abs(keras.ops.convert_to_numpy(conv.bias)[[1, 6]]).max() < 0.1
    assert np.abs(keras.ops.convert_to_numpy(dense.bias)[[2, 5, 7]]).max() < 0.1
    # ... and the cut outgoing weights grew back from 0 by a few Adam steps of 1e-3
    rows = np.abs(keras.ops.convert_to_numpy(model.get_layer("out").kernel)[[10, 13, 15]])
    assert 0 < rows.max() < 0.02
    stats = neuron_stats(model, x)
    assert stats.layers["conv_relu"].dead_count == stats.layers["dense_relu"].dead_count == 0


def test_sequential_batch_norm_and_flatten_are_mapped(rng):
    """Conv -> BatchNorm -> ReLU -> MaxPool -> Flatten -> Dense: a channel is 16 inputs of
    the Dense layer (channels_last: rows r with r % 8 == channel)."""
    x = rng.normal(size=(128, 10, 10, 3)).astype("float32")
    model = keras.Sequential([
        keras.Input((10, 10, 3)), keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="relu"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(6, activation="relu", name="hidden"), keras.layers.Dropout(0.2),
        keras.layers.Dense(3, name="out")])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    beta[:] = 2.0
    beta[[1, 6]] = -100.0  # dead through the batch norm
    bn.set_weights([gamma * 1.2, beta, mean + 0.1, var * 1.5])
    _force(model.get_layer("hidden"), [], kernel_scale=0.01)  # no dormant unit there
    hidden_before = np.array(model.get_layer("hidden").get_weights()[0])
    predicted = model.predict(x, verbose=0)
    redo = ReDo(probe=x, tau=0.1)
    redo.set_model(model)
    redo.on_train_begin()
    assert redo.recycle() == {"relu": (1, 6)}
    np.testing.assert_allclose(model.predict(x, verbose=0), predicted, atol=1e-6)
    gamma2, beta2, mean2, var2 = bn.get_weights()
    np.testing.assert_array_equal(gamma2[[1, 6]], 1.0)
    np.testing.assert_array_equal(beta2[[1, 6]], 0.0)
    np.testing.assert_array_equal(mean2[[1, 6]], 0.0)
    np.testing.assert_array_equal(var2[[1, 6]], 1.0)
    np.testing.assert_array_equal(beta2[[0, 2, 3, 4, 5, 7]], 2.0)
    kernel = model.get_layer("hidden").get_weights()[0]
    assert kernel.shape[0] == 4 * 4 * 8
    cut = np.isin(np.arange(kernel.shape[0]) % 8, [1, 6])
    assert not kernel[cut].any() and np.abs(hidden_before[cut]).min() > 0
    np.testing.assert_array_equal(kernel[~cut], hidden_before[~cut])
    assert neuron_stats(model, x).layers["relu"].dead_count == 0


@NCHW
@pytest.mark.parametrize("flatten_format", ["channels_last", "channels_first"])
def test_channels_first_conv_through_flatten(rng, flatten_format):
    """A (C, H, W) map flattened as is puts channel c at rows c * H * W ...; Flatten with
    data_format="channels_first" moves channels last first: rows r % C == c."""
    x = rng.normal(size=(64, 3, 8, 8)).astype("float32")
    inp = keras.Input((3, 8, 8))
    conv = keras.layers.Conv2D(8, 3, data_format="channels_first", name="conv")
    h = keras.layers.Flatten(data_format=flatten_format)(keras.layers.ReLU(name="relu")(conv(inp)))
    out = keras.layers.Dense(4, name="out")
    model = keras.Model(inp, out(h))
    _force(conv, [1, 6])
    before = np.array(keras.ops.convert_to_numpy(out.kernel))
    predicted = model.predict(x, verbose=0)
    redo = ReDo(probe=x)
    redo.set_model(model)
    redo.on_train_begin()
    assert redo.recycle() == {"relu": (1, 6)}
    np.testing.assert_allclose(model.predict(x, verbose=0), predicted, atol=1e-6)
    rows = np.arange(8 * 6 * 6)
    channel = rows // 36 if flatten_format == "channels_last" else rows % 8
    cut = np.isin(channel, [1, 6])
    kernel = keras.ops.convert_to_numpy(out.kernel)
    assert cut.sum() == 72 and not kernel[cut].any() and np.abs(before[cut]).min() > 0
    np.testing.assert_array_equal(kernel[~cut], before[~cut])


def test_layers_that_cannot_be_mapped_are_left_out_with_one_warning(rng):
    x = rng.normal(size=(64, 6)).astype("float32")
    inp = keras.Input((6,))
    a = keras.layers.ReLU(name="a")(keras.layers.Dense(8, name="da")(inp))
    b = keras.layers.ReLU(name="b")(keras.layers.Dense(8, name="db")(a))
    summed = keras.layers.Add(name="add")([a, b])  # a residual: a and b reach the Add
    c = keras.layers.Dense(5, activation="relu", name="c")(summed)
    raw = keras.layers.ReLU(name="raw")(inp)  # no weight layer feeds it
    out = keras.layers.Dense(2, activation="relu", name="out")(
        keras.layers.Concatenate()([c, raw]))
    model = keras.Model(inp, out)
    model.compile("adam", "mse")
    for name in ("da", "db", "c", "out"):
        _force(model.get_layer(name), [0, 1], kernel_scale=0.1)
    redo = ReDo(probe=x)
    redo.set_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        redo.on_train_begin()
    ours = [str(w.message) for w in caught if "ReDo" in str(w.message)]
    assert len(ours) == 1
    assert set(redo.skipped) == {"a", "b", "raw", "out"} and set(redo.maps) == {"c"}
    assert "add (Add)" in redo.skipped["a"] and "model input" in redo.skipped["raw"]
    assert "model output" in redo.skipped["out"]  # the output layer is never recycled
    untouched = [model.get_layer(n).get_weights() for n in ("da", "db")]
    out_kernel, out_bias = model.get_layer("out").get_weights()
    assert redo.recycle() == {"c": (0, 1)}
    for name, old in zip(("da", "db"), untouched):
        for w_old, w_new in zip(old, model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(w_old, w_new)
    kernel, bias = model.get_layer("out").get_weights()  # only c's outgoing rows change
    assert not kernel[:2].any() and np.abs(out_kernel[:2]).min() > 0
    np.testing.assert_array_equal(kernel[2:], out_kernel[2:])
    np.testing.assert_array_equal(bias, out_bias)


def test_no_weight_layer_feeding_the_activation_warns_once_and_changes_nothing(rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.ReLU(), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    before = model.get_weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[ReDo(probe=x)])
    assert len([w for w in caught if "ReDo leaves" in str(w.message)]) == 1
    assert history.history["recycled"] == [0, 0]
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 0.0}, "tau"), ({"tau": 1.5}, "tau"), ({"tau": -0.1}, "tau"),
    ({"every": 0}, "every"), ({"every": 1.5}, "every"), ({"every_steps": 0}, "every_steps"),
    ({"probe": "abc"}, "array of samples")])
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReDo(**{"probe": np.zeros((4, 3)), **kwargs})
    assert ReDo(probe=np.zeros((4, 3)), tau=1.0).tau == 1.0


def test_an_optimizer_with_unknown_slots_fails_before_any_weight_changes(rng):
    class Mine(keras.optimizers.SGD):
        pass

    x = rng.normal(size=(32, 4)).astype("float32")
    for optimizer, name in ((Mine(0.1), "Mine"), (keras.optimizers.Adagrad(0.1), "Adagrad")):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"),
                                  keras.layers.Dense(1)])
        _force(model.layers[0], [0, 1])
        model.compile(optimizer, "mse")
        before = model.get_weights()
        with pytest.raises(ValueError, match=rf"optimizer {name} .*Supported optimizers: Adam"):
            model.fit(x, x[:, :1], verbose=0, callbacks=[ReDo(probe=x)])
        for old, new in zip(before, model.get_weights()):
            np.testing.assert_array_equal(old, new)

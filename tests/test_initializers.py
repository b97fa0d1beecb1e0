"""RandomizedAsymmetric (RAI): its draws, born-dead networks against He normal, saving."""

import keras
import numpy as np
import pytest

import keras_relu
from keras_relu import RandomizedAsymmetric

DEPTH, WIDTH, SEEDS = 50, 4, 50


@pytest.mark.parametrize("shape", [(40, 300), (3, 3, 5, 300)])
def test_one_positive_beta_entry_per_unit_among_its_fan_in(shape):
    """With a tiny sigma the positive entry stands out: exactly one per unit (output
    channel), in (0, 1], Beta(2, 1)-distributed (mean 2/3, second moment 1/2)."""
    kernel = keras.ops.convert_to_numpy(RandomizedAsymmetric(sigma=1e-4, seed=3)(shape))
    per_unit = kernel.reshape(-1, shape[-1])  # (fan_in, units)
    big = np.abs(per_unit) > 1e-3
    assert big.sum(axis=0).tolist() == [1] * shape[-1]
    positive = per_unit[big]
    assert positive.min() > 0 and positive.max() <= 1
    assert abs(positive.mean() - 2 / 3) < 0.05 and abs((positive**2).mean() - 0.5) < 0.05
    rows = np.argmax(big, axis=0)  # where the positive entry landed: all over the fan-in
    assert len(set(rows.tolist())) > per_unit.shape[0] // 2


def test_symmetric_part_has_the_designed_scale():
    fan_in, units = 64, 2000
    kernel = keras.ops.convert_to_numpy(RandomizedAsymmetric(seed=1)((fan_in, units)))
    column_sums = kernel.sum(axis=0)  # normal part: mean 0; positive entry: mean 2/3
    assert abs(column_sums.mean() - 2 / 3) < 0.05
    off = np.sort(kernel, axis=0)[:-1]  # drop each unit's largest entry (mostly the Beta one)
    assert 0.55 < off.std() * np.sqrt(fan_in) / 0.6007 < 1.1
    again = keras.ops.convert_to_numpy(RandomizedAsymmetric(seed=1)((fan_in, units)))
    np.testing.assert_array_equal(kernel, again)  # seeded: reproducible


def _born_dead_share(make):
    """Share of SEEDS deep narrow ReLU MLPs (DEPTH x WIDTH, zero biases) whose output is
    constant over 1000 random normal inputs: some layer is all zeros for every input."""
    x0 = np.random.default_rng(0).normal(size=(1000, WIDTH))
    dead = 0
    for seed in range(SEEDS):
        # one draw of all the network's kernels: DEPTH kernels of WIDTH units side by side
        kernels = keras.ops.convert_to_numpy(make(seed)((WIDTH, DEPTH * WIDTH)))
        x = x0
        for kernel in np.split(kernels.astype("float64"), DEPTH, axis=1):
            x = np.maximum(x @ kernel, 0)
        dead += not np.ptp(x, axis=0).any()
    return dead / SEEDS


def test_fewer_deep_narrow_networks_are_born_dead_than_with_he_normal():
    he = _born_dead_share(lambda seed: keras.initializers.HeNormal(seed=seed))
    rai = _born_dead_share(lambda seed: RandomizedAsymmetric(seed=seed))
    print(f"\nborn dead ({keras.backend.backend()}, {DEPTH} x width {WIDTH}, {SEEDS} seeds): "
          f"he_normal {he:.2f}, RandomizedAsymmetric {rai:.2f}")
    assert he >= 0.6  # the deep-narrow regime of Lu et al.: He normal mostly dies
    assert rai <= he - 0.3


def test_round_trips_through_a_keras_file_in_safe_mode(tmp_path, rng):
    init = RandomizedAsymmetric(sigma=0.5, alpha=3.0, beta=1.5, seed=7)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(5, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(1)])
    x = rng.normal(size=(4, 6)).astype("float32")
    path = tmp_path / "rai.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    restored = loaded.layers[0].kernel_initializer
    assert isinstance(restored, RandomizedAsymmetric)
    assert restored.get_config() == {"sigma": 0.5, "alpha": 3.0, "beta": 1.5, "seed": 7}
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    fresh = keras.initializers.get(keras.initializers.serialize(init))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh((6, 5))),
                                  keras.ops.convert_to_numpy(init((6, 5))))


@pytest.mark.parametrize("kwargs, match", [({"sigma": 0}, "sigma"), ({"alpha": -1}, "alpha"),
                                           ({"beta": 0}, "beta"), ({"seed": "x"}, "seed")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomizedAsymmetric(**kwargs)
    with pytest.raises(ValueError, match="kernels"):
        RandomizedAsymmetric()((5,))
    assert keras_relu.RandomizedAsymmetric is RandomizedAsymmetric

"""Datasets and config -> model: splits, normalisation, npz checks, schedules, clipping."""

import keras
import numpy as np
import pytest

from search import UsageError, data
from search.builders import Cures, build_default
from search.optimizers import compile_model, learning_rate, optimizer

BASE = {"activation": "relu", "initializer": "he_normal", "batch_norm": False, "dropout": 0.0,
        "clipping": "none", "schedule": "constant", "learning_rate": 1e-2, "optimizer": "adam",
        "depth": 2, "width": 16}


def test_digits_split_is_deterministic_and_normalised():
    first, again, other = data.load("digits", seed=1), data.load("digits", seed=1), data.load("digits", seed=2)
    assert first.x_train.shape == (1150, 64) and first.x_val.shape == (288, 64)
    assert first.x_test.shape == (359, 64)  # held out: the search never sees it
    assert first.x_train.dtype == np.float32 and first.num_classes == 10
    np.testing.assert_array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.y_val, other.y_val)
    assert abs(float(first.x_train.mean())) < 1e-3  # standardised with training statistics
    assert not first.is_image


def test_synthetic_is_sized_by_its_arguments():
    ds = data.load("synthetic", samples=100, features=6, classes=3)
    assert ds.x_train.shape == (64, 6) and ds.x_val.shape == (16, 6) and ds.num_classes == 3
    assert ds.x_test.shape == (20, 6)


def test_npz_images_with_given_validation(tmp_path):
    path = tmp_path / "own.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y_train=np.arange(20) % 3,
             x_val=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), y_val=np.arange(6) % 3)
    ds = data.load(f"npz:{path}")
    assert ds.is_image and ds.input_shape == (8, 8, 1) and len(ds.x_val) == 6
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert data.slug(f"npz:{path}") == "npz-own"


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("not numpy"), "is not an npz file"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y_train=np.zeros(4)), "lacks x_train"),
        (lambda p: np.savez(p, x_train=np.zeros((4, 2)), y_train=np.zeros(3)), "same length"),
        (lambda p: np.savez(p, x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_val=np.zeros((2, 2))),
         "only one of x_val and y_val"),
    ],
)
def test_bad_npz_is_a_usage_error(tmp_path, make, words):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(UsageError, match=words):
        data.load(f"npz:{path}")


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(UsageError, match="unknown dataset 'imagenet'.*digits.*npz:PATH"):
        data.load("imagenet")


def test_keras_dataset_without_network_names_the_dataset(monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://example/mnist.npz: Name or service not known")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(data.DatasetUnavailable, match="dataset fashion_mnist could not be downloaded"):
        data.load("fashion_mnist")


@pytest.mark.parametrize(
    "schedule, extra, kind",
    [
        ("constant", {}, float),
        ("cosine", {}, keras.optimizers.schedules.CosineDecay),
        ("cosine_warmup", {"warmup_fraction": 0.2}, keras.optimizers.schedules.CosineDecay),
        ("exponential", {"decay_rate": 0.9}, keras.optimizers.schedules.ExponentialDecay),
        ("piecewise", {}, keras.optimizers.schedules.PiecewiseConstantDecay),
    ],
)
def test_schedules_are_keras_schedules(schedule, extra, kind):
    rate = learning_rate({**BASE, "schedule": schedule, **extra}, steps_per_epoch=10, epochs=3)
    assert isinstance(rate, kind)
    if schedule == "cosine_warmup":
        assert rate.warmup_target == BASE["learning_rate"] and rate.warmup_steps == 6
        assert float(rate(0)) == 0.0


@pytest.mark.parametrize("clipping", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_uses_the_optimizer_argument(clipping):
    opt = optimizer({**BASE, "clipping": clipping, "clip_threshold": 0.5, "optimizer": "sgd",
                     "momentum": 0.8}, 10, 2)
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.8
    assert getattr(opt, clipping) == 0.5


def test_mlp_and_cnn_train_and_name_their_activations(rng):
    config = {**BASE, "batch_norm": True, "dropout": 0.1, "activation": "sugar_bsilu"}
    mlp = compile_model(build_default(Cures(config), (12,), 3), config, 2, 1)
    names = [layer.name for layer in mlp.layers]
    assert "activation_0" in names and "activation_1" in names
    mlp.fit(rng.normal(size=(32, 12)), rng.integers(0, 3, 32), batch_size=16, verbose=0)
    config = {**BASE, "optimizer": "adamw", "schedule": "piecewise"}
    cnn = compile_model(build_default(Cures(config), (8, 8, 1), 4), config, 2, 1)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in cnn.layers)
    history = cnn.fit(rng.random((32, 8, 8, 1)), rng.integers(0, 4, 32), batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][-1])

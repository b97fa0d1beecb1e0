"""Shared fixtures. The backend is fixed per process by KERAS_BACKEND (see tests/run.py)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.utils.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)

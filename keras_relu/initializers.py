"""Initialisers against the dying ReLU: `RandomizedAsymmetric` (RAI)."""

import math
import random

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_relu")
class RandomizedAsymmetric(keras.initializers.Initializer):
    """Randomized asymmetric initialisation (RAI) of a Dense or Conv kernel.

    Lu, Shin, Su and Karniadakis (2019), "Dying ReLU and Initialization: Theory
    and Numerical Examples", arXiv 1903.06733, Section 5. A deep, narrow ReLU
    network initialised from a symmetric distribution (He, Glorot) is born dead
    with a probability that tends to 1 with depth: some layer outputs 0 for
    every input and the network's output is constant. RAI gives every unit one
    positive incoming weight, which makes a dead unit much less likely.

    Formula, for a kernel of shape `(..., fan_in_axis, units)` (a Dense kernel
    `(fan_in, units)`, a conv kernel `(h, w, in, units)` with
    `fan_in = h * w * in`), independently for each unit `j`:

    ```
    k_j     ~ Uniform{0, ..., fan_in - 1}           (one incoming entry)
    W[k_j, j] ~ Beta(alpha, beta)                     (positive; Beta(2, 1))
    W[i, j]   ~ Normal(0, sigma**2 / fan_in), i != k_j   (symmetric)
    ```

    Constants and where they come from:

    - `alpha=2, beta=1`: the paper's positive distribution P = Beta(2, 1)
      (E[xi] = 2/3, E[xi**2] = 1/2).
    - `sigma=0.6007`: the paper's standard deviation of the symmetric part for
      P = Beta(2, 1), sigma_l = 0.6007 / sqrt(N_{l-1} + 1) (Section 5; taken as
      published and as public re-implementations use it, not re-derived here).
      The paper counts the bias as one of the N_{l-1} + 1 incoming entries; a
      Keras kernel initialiser sees only the kernel, so here the positive entry
      is drawn among the `fan_in` kernel entries and the scale is
      `0.6007 / sqrt(fan_in)`.
      It is not He's "2 / fan_in" second moment: with it the mean squared
      activation shrinks by about 0.5-0.75x per layer at init (NumPy, widths 4
      to 100), so a deep stack starts with a small forward signal. Matching
      He's second moment instead, (fan_in - 1) s**2 / fan_in + E[xi**2] = 2,
      gives `sigma` about 1.22 (the signal then grows per layer), which leaves
      more networks born dead (50 layers of width 4, 500 NumPy draws: 0.39
      against 0.20 with 0.6007; He normal 0.92). `sigma` is a parameter.
    - Bias: leave the layer's `bias_initializer` at zeros (Keras' default). The
      paper draws the bias from the same normal (or makes it the positive
      entry); a zero bias keeps each unit's positive entry on a kernel weight,
      where it counts for every input.

    Example:

    ```python
    layer = keras.layers.Dense(4, activation="relu",
                               kernel_initializer=keras_relu.RandomizedAsymmetric(seed=0))
    ```

    Args:
        sigma: standard deviation of the symmetric entries times sqrt(fan_in).
        alpha: first shape parameter of the positive entry's Beta distribution.
        beta: second shape parameter of the positive entry's Beta distribution.
        seed: an integer, or None for a seed drawn from Python's `random` (so
            `keras.utils.set_random_seed` makes it reproducible). Like Keras'
            own initialisers, one instance returns the same values each call.
    """

    def __init__(self, sigma=0.6007, alpha=2.0, beta=1.0, seed=None):
        for name, value in (("sigma", sigma), ("alpha", alpha), ("beta", beta)):
            if not value > 0:
                raise ValueError(f"RandomizedAsymmetric: `{name}` must be > 0, got {value!r}.")
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"RandomizedAsymmetric: `seed` must be an int or None, got {seed!r}.")
        self.sigma, self.alpha, self.beta = float(sigma), float(alpha), float(beta)
        self._init_seed = seed
        self.seed = seed if seed is not None else random.randint(1, int(1e9))

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            raise ValueError(
                "RandomizedAsymmetric initialises kernels of shape (fan_in, units) or "
                f"(..., in, units); got shape {shape}. Use 'zeros' for a bias.")
        dtype = dtype or keras.config.floatx()
        fan_in, units = math.prod(shape[:-1]), shape[-1]
        normal = keras.random.normal((fan_in, units), stddev=self.sigma / math.sqrt(fan_in),
                                     dtype=dtype, seed=self.seed)
        positive = keras.random.beta((1, units), self.alpha, self.beta, dtype=dtype,
                                     seed=self.seed + 1)
        index = keras.random.randint((units,), 0, fan_in, seed=self.seed + 2)
        chosen = ops.transpose(ops.one_hot(index, fan_in, dtype=dtype))  # (fan_in, units)
        return ops.reshape(normal * (1 - chosen) + positive * chosen, shape)

    def get_config(self):
        return {"sigma": self.sigma, "alpha": self.alpha, "beta": self.beta,
                "seed": self._init_seed}

"""What XLA plans to hold during one JAX training step, per SugarReLU variant.

    KERAS_BACKEND=jax python benchmarks/sugar_xla_memory.py [--models cnn,mlp]
        [--variants relu,relu_again,sugar,sugar_nelu,sugar_gelu,relu_custom]

Compiles each variant's Keras `train_step` (bench_sugar.py's models) and prints XLA's
buffer assignment: the temporary bytes of the step, and their ratio to ReLU's. Exact and
repeatable, so it tells why bench_sugar.py's measured step memory differs on JAX; run
with `--hlo VARIANT` it also lists the step's activation-sized buffers.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sugar_models import (  # noqa: E402
    BATCH, CNN_BATCH, NAMED_VARIANTS, build_model, make_data, unknown_variants)


def compiled_step(variant, arch):
    import jax

    model = build_model(variant, arch)
    x, y = make_data(BATCH if arch == "mlp" else CNN_BATCH, arch)
    model.train_on_batch(x, y)  # builds the optimizer's variables
    state = tuple([v.value for v in group] for group in (
        model.trainable_variables, model.non_trainable_variables,
        model.optimizer.variables, model.metrics_variables))
    return jax.jit(model.train_step).lower(state, (x, y)).compile(), x.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--variants", default="relu,relu_again,sugar,sugar_nelu,sugar_gelu,"
                                              "relu_custom")
    parser.add_argument("--hlo", help="list the activation-sized buffers of this variant")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = unknown_variants(variants)
    if os.environ.get("KERAS_BACKEND") != "jax" or unknown or variants[0] != "relu":
        sys.stderr.write("sugar_xla_memory.py: needs KERAS_BACKEND=jax and --variants starting "
                         f"with relu, of {', '.join(NAMED_VARIANTS)} or sugar_<surrogate>\n")
        sys.exit(2)
    models = args.models.split(",")
    if set(models) - {"cnn", "mlp"} or (args.hlo and args.hlo not in variants):
        sys.stderr.write("sugar_xla_memory.py: --models takes cnn and mlp; --hlo one of the "
                         "--variants\n")
        sys.exit(2)
    for arch in models:
        base = None
        for variant in variants:
            step, batch = compiled_step(variant, arch)
            mib = step.memory_analysis().temp_size_in_bytes / 2**20
            base = base or mib
            print(f"{arch:<5}{variant:<14}{mib:9.1f} MiB {mib / base:7.3f}", flush=True)
            if variant == args.hlo:
                text = step.as_text()
                for line in text[text.index("ENTRY"):].splitlines():
                    if f"f32[{batch}," in line.split("=", 1)[-1][:30]:
                        print("    " + line.strip()[:160])


if __name__ == "__main__":
    main()

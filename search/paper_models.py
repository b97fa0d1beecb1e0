"""VGG-16 and ResNet-18 for 32x32 images, as in the SUGAR paper's CIFAR experiments.

The usual CIFAR variants: VGG-16's 13 3x3 convolutions with batch normalisation and
five 2x2 max-pools, then one Dense classifier; ResNet-18 with a 3x3 stem, four stages
of two basic blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2), 1x1 projection
shortcuts, global average pooling. No weights are downloaded. Every activation is
`keras_relu.activation_layer(config["activation"])`, named `activation_<i>`.
Same signature as `search.models.build_model`; compiled with `search.models.optimizer`.
"""

import itertools

import keras
from keras import layers

import keras_relu
from search.models import optimizer

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _activation(config, counter):
    layer = keras_relu.activation_layer(config["activation"])
    layer.name = f"activation_{next(counter)}"  # see search.models._block
    return layer


def _conv_bn(x, filters, config, strides=1, kernel=3):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=config.get("initializer", "he_normal"))(x)
    return layers.BatchNormalization()(x)


def _compile(inputs, x, config, num_classes, steps_per_epoch, epochs, name):
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=optimizer(config, steps_per_epoch, epochs),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_vgg16(config, input_shape, num_classes, steps_per_epoch, epochs):
    """VGG-16 (with batch normalisation) for small images."""
    counter = itertools.count()
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for item in VGG16:
        if item == "M":
            x = layers.MaxPooling2D()(x)
        else:
            x = _activation(config, counter)(_conv_bn(x, item, config))
    x = layers.Flatten()(x)
    return _compile(inputs, x, config, num_classes, steps_per_epoch, epochs, "vgg16")


def _basic_block(x, filters, strides, config, counter):
    shortcut = x
    y = _activation(config, counter)(_conv_bn(x, filters, config, strides))
    y = _conv_bn(y, filters, config)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, config, strides, kernel=1)
    return _activation(config, counter)(layers.Add()([y, shortcut]))


def build_resnet18(config, input_shape, num_classes, steps_per_epoch, epochs):
    """ResNet-18 (basic blocks, 2-2-2-2) for small images."""
    counter = itertools.count()
    inputs = keras.Input(shape=tuple(input_shape))
    x = _activation(config, counter)(_conv_bn(inputs, 64, config))
    for filters, strides in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = _basic_block(x, filters, strides, config, counter)
        x = _basic_block(x, filters, 1, config, counter)
    x = layers.GlobalAveragePooling2D()(x)
    return _compile(inputs, x, config, num_classes, steps_per_epoch, epochs, "resnet18")

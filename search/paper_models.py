"""VGG-16 and ResNet-18 for 32x32 images, as in the SUGAR paper's CIFAR experiments.

The usual CIFAR variants: VGG-16's 13 3x3 convolutions with batch normalisation and
five 2x2 max-pools, then one Dense classifier; ResNet-18 with a 3x3 stem, four stages
of two basic blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2), 1x1 projection
shortcuts, global average pooling. No weights are downloaded. Model builders of the
`search.builders` protocol: every activation is `cures.activation()`, named
`activation_<i>`; the trial runner compiles them.
"""

import keras
from keras import layers

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _conv_bn(x, filters, cures, strides=1, kernel=3):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=cures.initializer)(x)
    return layers.BatchNormalization()(x)


def _classifier(inputs, x, num_classes, name):
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def build_vgg16(cures, input_shape, num_classes):
    """VGG-16 (with batch normalisation) for small images."""
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for item in VGG16:
        if item == "M":
            x = layers.MaxPooling2D()(x)
        else:
            x = cures.activation()(_conv_bn(x, item, cures))
    return _classifier(inputs, layers.Flatten()(x), num_classes, "vgg16")


def _basic_block(x, filters, strides, cures):
    shortcut = x
    y = cures.activation()(_conv_bn(x, filters, cures, strides))
    y = _conv_bn(y, filters, cures)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, cures, strides, kernel=1)
    return cures.activation()(layers.Add()([y, shortcut]))


def build_resnet18(cures, input_shape, num_classes):
    """ResNet-18 (basic blocks, 2-2-2-2) for small images."""
    inputs = keras.Input(shape=tuple(input_shape))
    x = cures.activation()(_conv_bn(inputs, 64, cures))
    for filters, strides in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = _basic_block(x, filters, strides, cures)
        x = _basic_block(x, filters, 1, cures)
    x = layers.GlobalAveragePooling2D()(x)
    return _classifier(inputs, x, num_classes, "resnet18")

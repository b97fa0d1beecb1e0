"""`--dataset images:DIR`: a folder of class sub-folders, streamed from disk.

The files are split by seed once, before anything is read: 20% test, then 20% of the rest
validation, the rest training (as for arrays). Each split is a view folder of links to its
files, with every class sub-folder (so class indices agree), read by Keras'
`keras.utils.image_dataset_from_directory`: only the training split is shuffled, and only
among its own files. Pixels are scaled to [0, 1]. Images are resized to `image_size`
(default: the first image's size).
"""

import atexit
import os
import pathlib
import shutil
import tempfile

import numpy as np

from search import UsageError

FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
PREFIX = "images:"


def class_files(folder):
    """{class name: sorted image files} of `folder`; UsageError without class sub-folders."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise UsageError(f"{PREFIX}{folder}: no such folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    found = {c.name: sorted(f for f in c.rglob("*") if f.suffix.lower() in FORMATS)
             for c in classes}
    if not found:
        raise UsageError(f"{PREFIX}{folder}: no class sub-folders (one folder of images per "
                         "class: DIR/cat/1.png, DIR/dog/2.png, ...)")
    if sum(len(files) for files in found.values()) < 3:
        raise UsageError(f"{PREFIX}{folder}: fewer than 3 images ({', '.join(FORMATS)}) in its "
                         "class sub-folders")
    return found


def split_files(found, seed, test_fraction=0.2, val_fraction=0.2):
    """{split: {class: files}}: test, then validation, cut off by `seed`."""
    every = [(name, f) for name, files in found.items() for f in files]
    order = np.random.default_rng(seed).permutation(len(every))
    test_cut = max(1, round(len(every) * test_fraction))
    val_cut = test_cut + max(1, round((len(every) - test_cut) * val_fraction))
    parts = {"test": order[:test_cut], "val": order[test_cut:val_cut], "train": order[val_cut:]}
    return {split: {name: [every[i][1] for i in sorted(index) if every[i][0] == name]
                    for name in found} for split, index in parts.items()}


def _view(split_files_, root):
    """A folder of links to one split's files, with every class sub-folder."""
    for name, files in split_files_.items():
        folder = root / name
        folder.mkdir(parents=True)
        for k, file in enumerate(files):
            os.symlink(file.resolve(), folder / f"{k:07d}{file.suffix.lower()}")
    return root


def image_size_of(path):
    import keras

    width, height = keras.utils.load_img(path).size
    return height, width


def load_images(spec, seed=0, batch_size=64, image_size=None, probe_size=256):
    """The `StreamData` of `images:DIR`."""
    import keras

    from search.streams import StreamData

    folder = spec[len(PREFIX):]
    found = class_files(folder)
    size = tuple(image_size) if image_size else image_size_of(
        next(f for files in found.values() for f in files))
    views = pathlib.Path(tempfile.mkdtemp(prefix="keras-relu-images-"))
    atexit.register(shutil.rmtree, views, ignore_errors=True)
    pipelines = {}
    for split, files in split_files(found, seed).items():
        data = keras.utils.image_dataset_from_directory(
            _view(files, views / split), class_names=list(found), image_size=size,
            batch_size=batch_size, shuffle=split == "train", seed=seed, verbose=False)
        pipelines[split] = data.map(lambda x, y: (x / 255.0, y))
    return StreamData(spec, pipelines["train"], pipelines["val"], pipelines["test"],
                      num_classes=len(found), probe_size=probe_size)

"""Train MIMS on AdrenalMNIST3D (CT volumes as bags of axial slices) with plain `model.fit`.

    python examples/train_adrenal.py                 # about 35 s on 2 CPU cores; prints "test AUROC: 0.717"
                                                     # on an AMD EPYC (another CPU: README, Reproducibility)
    python examples/train_adrenal.py --epochs 1
"""

import argparse
import os

import keras
from sklearn.metrics import roc_auc_score

import mims_tf  # noqa: F401 - first: TensorFlow's start-up lines stay off the terminal
from mims_tf.data import BagSource, from_medmnist, make_dataset
from mims_tf.models import build_model
from mims_tf.train import compile_model

HERE = os.path.dirname(os.path.abspath(__file__))
NPZ = os.path.join(HERE, "..", "..", "shared", "data", "adrenalmnist3d", "adrenalmnist3d.npz")

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=NPZ)
parser.add_argument("--epochs", type=int, default=8)
args = parser.parse_args()
keras.utils.set_random_seed(0)                            # the same run every time on one machine

manifest = from_medmnist(args.data)                       # official train / val / test splits
train = make_dataset(BagSource(manifest, "train"), training=True, image_size=(28, 28), instances=16, batch_size=8,
                     seed=0)
val = make_dataset(BagSource(manifest, "val"), training=False, image_size=(28, 28), batch_size=8)

model = build_model("mims", backbone="tiny", weights=None, image_size=(28, 28), kernels={1: 16, 2: 16})
compile_model(model, learning_rate=3e-3)                  # backbone at half the head's learning rate
model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)

test_source = BagSource(manifest, "test")
probs = model.predict(make_dataset(test_source, training=False, image_size=(28, 28), batch_size=8), verbose=0)
print(f"test AUROC: {roc_auc_score(test_source.labels, probs[:, 1]):.3f}")

"""One Keras 3 fit (torch back-end) on the 8x8 digits, stopped by PEng4NN, surviving an interruption.

    python examples/keras_digits.py

Keras validates once per epoch (E = 1). The curve is backed up beside BackupAndRestore, so running the
script again after killing it resumes the fit with its curve.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from peng4nn.integrations.keras import PEng4NNEarlyStopping  # noqa: E402

OUT = "runs/keras-digits"


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    perm = np.random.default_rng(0).permutation(len(x))
    (xt, yt), (xv, yv) = (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    stopper = PEng4NNEarlyStopping("val_accuracy", num_classes=10, estimator={"e_max": 20},
                                   backup_path=f"{OUT}/peng4nn.json")
    os.makedirs(OUT, exist_ok=True)
    history = model.fit(xt, yt, validation_data=(xv, yv), epochs=20, batch_size=64, verbose=0,
                        callbacks=[keras.callbacks.BackupAndRestore(f"{OUT}/backup"), stopper])
    for i, acc in enumerate(history.history["val_accuracy"]):
        est = history.history.get("peng4nn_estimate", [])
        shift = len(history.history["val_accuracy"]) - len(est)  # the first epochs have no prediction yet
        pred = f"  estimate {est[i - shift]:6.2f}" if i >= shift else ""
        print(f"epoch {i + 1:2d}  val_accuracy {100 * acc:6.2f}{pred}")
    d = stopper.decision
    print(f"{d.reason.value} at epoch {d.epoch:g} of 20: estimate "
          + (f"{stopper.estimate:.2f}%" if stopper.estimate is not None else "none"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Keras's classic MNIST MLP recipe, and the optimizers PyTorch users reach for,
on mnist_mlp's engine.

    python examples/optimizers.py [--data DIR] [--epochs N]

Trains 784-512-512-10 with ReLU, dropout 0.2 and RMSprop (batch 128, shuffled,
10% held out for validation, early stopping on the validation loss), then a
784-300-10 with SGD + Nesterov momentum and a cosine schedule, and prints the
test accuracy of each.
"""

from __future__ import annotations

import argparse

import mnist_mlp as mm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder with the MNIST files (default: the package's search)")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    (x, y), (xt, yt) = mm.load_mnist(args.data)

    keras = mm.MLP([784, 512, 512, 10], dropout=0.2, seed=0)
    stop = mm.EarlyStopping(monitor="val_loss", patience=3)
    keras.fit(x, y, epochs=args.epochs, batch_size=128, shuffle=True, optimizer=mm.optim.RMSprop(lr=1e-3),
              validation_split=0.1, early_stopping=stop, eval_train=False, verbose=True)
    print(f"Keras recipe (RMSprop, dropout 0.2): test accuracy {keras.evaluate(xt, yt)[1]:.4f}"
          + (f", stopped early at epoch {stop.stopped_epoch}" if stop.stopped_epoch is not None else ""))

    torchy = mm.MLP([784, 300, 10], seed=0)
    torchy.fit(x, y, epochs=args.epochs, batch_size=32, shuffle=True,
               optimizer=mm.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
               lr_schedule=mm.optim.CosineAnnealingLR(T_max=args.epochs), eval_train=False, verbose=True)
    print(f"SGD + Nesterov, cosine schedule: test accuracy {torchy.evaluate(xt, yt)[1]:.4f}")


if __name__ == "__main__":
    main()

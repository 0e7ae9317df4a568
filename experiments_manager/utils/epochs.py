"""Epoch numbering: one rule for everything a researcher reads.

Keras counts epochs from 0 in its callbacks (`on_epoch_end(epoch, ...)`) and
from 1 on its console ("Epoch 1/10", "Epoch 5: early stopping"). run.json,
history.csv, TensorBoard steps, training_curves.png and our log lines use the
console's numbering: epoch n is the n-th epoch trained, so n epochs done means
the last one is epoch n.
"""


def shown_epoch(epoch: int) -> int:
    """The number a user reads for Keras' 0-based `epoch`: `shown_epoch(0) == 1`."""
    return int(epoch) + 1


def on_schedule(number: int, every: int, epochs: "int | None") -> bool:
    """True when epoch `number` (from 1) is one that a work done "every `every` epochs and at the last" does:
    epochs 1, 1 + every, 1 + 2 * every, ... and `epochs` (the last one `fit` was asked for; None: unknown).

    Example: `[n for n in range(1, 21) if on_schedule(n, 5, 20)] == [1, 6, 11, 16, 20]`.
    """
    return (number - 1) % every == 0 or number == epochs

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

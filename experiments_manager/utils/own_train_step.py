"""A model that trains by its own `train_step` (a GAN, a VAE, a contrastive model): Keras lets its step decide what a
batch holds and what reads it, so the engine does not assume `model(x)` is the data's path (the dry build, the
projector, the build before a restore).

Example:

```python
has_own_train_step(gan)   # True: its class defines train_step
```
"""

from typing import Any


def has_own_train_step(model: Any) -> bool:
    """True for a model whose class defines its own `train_step` (a VAE's, a GAN's).

    Args:
        model: a Keras model.
    """
    import keras

    return type(model).train_step is not keras.Model.train_step


def mark_built_when_its_layers_are(model: Any) -> None:
    """Marks `model` built when each of its layers is: a model whose own call never ran (a GAN whose served function
    calls its generator, whose step calls both parts) holds every variable once its parts are built, which is what
    Keras' own build would conclude; Keras refuses to read weights into a model not marked built.

    Args:
        model: a Keras model.
    """
    if not model.built and all(layer.built for layer in model._flatten_layers(include_self=False)):
        model.built = True

"""Settings written for Keras 2 (TF 2.14) keep their behaviour under Keras 3.

- `namespaces.py`: the tf.keras names Keras 3 dropped or changed (legacy optimizers, `lr=`, `Reduction.AUTO`...).
- `metrics.py`: metric functions and names with Keras 2's semantics (ranks matched, Keras 2's names).
- `pipelines.py`: what `get_input_pipeline` may return (a Dataset, a Keras 2 Sequence, iterator or generator) as
  the `tf.data.Dataset` the trainer fits on.
"""

"""Writes the TensorBoard projector of model outputs on a sample of validation data."""

import numpy as np
import keras


class ProjectorLogger(keras.callbacks.Callback):
    """At the end of training, embeds the model outputs of validation samples.

    Runs after Keras has swapped the EMA weights into the model (end of `fit`),
    so the projector shows what the exported model computes. Each point's
    metadata is its label when the label is one value per sample, else its index.

    Args:
        log_dir: folder for the projector files (e.g. `logs/projector`).
        dataset: the validation `tf.data.Dataset` of (x, y) batches.
        max_samples: how many samples to embed.
    """

    def __init__(self, log_dir, dataset, max_samples=500):
        super().__init__()
        self.log_dir = log_dir
        self.dataset = dataset
        self.max_samples = max_samples

    def on_train_end(self, logs=None):
        outputs, labels = self._sample()
        if outputs is None:
            return
        write_projector(self.log_dir, outputs, labels)

    def _sample(self):
        outputs, labels, count = [], [], 0
        for x, y in self.dataset:
            prediction = self.model(x, training=False)
            outputs.append(_flatten_per_sample(prediction))
            labels.append(_flatten_per_sample(y))
            count += outputs[-1].shape[0]
            if count >= self.max_samples:
                break
        if not outputs:
            return None, None
        return np.concatenate(outputs)[: self.max_samples], np.concatenate(labels)[: self.max_samples]


def _flatten_per_sample(structure):
    import tensorflow as tf

    parts = [np.asarray(tf.cast(t, tf.float32)) for t in tf.nest.flatten(structure)]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def write_projector(log_dir, outputs, labels):
    """Saves `outputs` (N x D) as a projector embedding with a metadata TSV."""
    import os

    import tensorflow as tf
    from tensorboard.plugins import projector

    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "metadata.tsv"), "w") as handle:
        if labels.shape[1] == 1:
            handle.writelines(f"{value:.6g}\n" for value in labels[:, 0])
        else:
            handle.writelines(f"{index}\n" for index in range(len(outputs)))
    embedding = tf.Variable(outputs, name="model_outputs")
    tf.train.Checkpoint(embedding=embedding).save(os.path.join(log_dir, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    item = config.embeddings.add()
    item.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    item.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(log_dir, config)

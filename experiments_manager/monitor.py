"""Which way the monitored quantity improves. No TensorFlow here: sweeps score trials with it."""

MAXIMIZED_HINTS = ("acc", "auc", "precision", "recall", "f1", "iou")


def monitor_mode(name):
    """'max' for accuracy-like quantities, else 'min' (as Keras' mode='auto').

    Example:

    ```python
    monitor_mode("val_accuracy")  # 'max'
    monitor_mode("val_loss")      # 'min'
    ```
    """
    return "max" if any(hint in name.lower() for hint in MAXIMIZED_HINTS) else "min"

"""Edge deployment: a run's exported version converted to LiteRT (TFLite) or ONNX, its parity report against the
SavedModel, and the settings' `Client_IO` run against the exported file on this machine (`predict --edge`).

One module per capability: `formats` (targets, folders, the `[edge]` extra), `preflight` (what a version needs that a
format lacks: strings, lookup tables), `convert` (the converters), `runtime`
(the local runtimes behind one interface), `data` (the pipelines' batches), `parity` (the report), `timing` (latency, throughput), `export` (the
`export` command's work; a mixed-precision version is converted from its float32 copy, `training/float32_copy.py`),
`predict` (`predict --edge`). Nothing here imports TensorFlow or a converter at the top.
"""

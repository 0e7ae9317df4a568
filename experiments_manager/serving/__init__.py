"""Serving: a TF-Serving-compatible embedded server, its streaming client, and the real binary's launcher.

Modules: config (sources, models.config), versions (poll/load/unload), servable (one loaded version),
predictor and batching (requests -> model calls, big ones in slices), tensors (REST's JSON), tensor_protos (gRPC's
TensorProtos), json_numbers (a big REST body's numbers straight to arrays), request_budget (the big requests worked on
at once), grpc_service and rest (front ends),
server (lifecycle), client (Client_IO loop), sidecar (`train --serve`), tfserving (tensorflow_model_server),
folder (a working folder's experiments as named models, polled), entry_points (what the `serve` and `predict` commands
run).
"""

"""GetModelStatus answers, shared by the gRPC and REST front ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from tensorflow_serving.apis import get_model_status_pb2

if TYPE_CHECKING:
    from experiments_manager.serving.versions import VersionManager


def status_response(versions: VersionManager, name: str,
                    version: Optional[int] = None) -> get_model_status_pb2.GetModelStatusResponse:
    """A `GetModelStatusResponse` for model `name` (one version, or all known)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, state, message in versions.statuses(name, version):
        status = response.model_version_status.add()
        status.version = number
        status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        status.status.SetInParent()  # TF Serving always reports a status, OK included
        if message:
            status.status.error_code = 2  # tensorflow.error.UNKNOWN
            status.status.error_message = message
    return response

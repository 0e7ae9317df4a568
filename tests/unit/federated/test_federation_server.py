"""federated/federation_server.py: the line a failed round's message quotes from each client's error."""

import pytest

from experiments_manager.federated.federation_server import _last_line


@pytest.mark.parametrize("reason, line", [
    ("Traceback (most recent call last):\n  File ...\nValueError: no data\n", "ValueError: no data"),
    (None, "no reason given"),  # Flower's Error.reason may be None
    ("  \n", "no reason given"),
])
def test_a_client_errors_last_line_is_quoted_even_without_a_reason(reason, line):
    assert _last_line(reason) == line

"""What a test does when the real data or model it needs is absent: skip on a user's offline machine, fail in CI
(``SUBLIMINAL_REQUIRE_DATA=1``, set by ``.ci/run``), so a broken CI cache is never mistaken for a pass."""

from __future__ import annotations

import pytest

from mnist_mlp.data import data_required


def unavailable(msg: str):
    """Fail with ``msg`` where real data is required (CI), else skip with it. Never returns."""
    if data_required():
        pytest.fail(msg)
    pytest.skip(msg)

"""Everything under integration/ talks to a real API server."""

import pytest

pytestmark = pytest.mark.cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)

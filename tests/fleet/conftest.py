"""Fleet tests reuse the edge tests' upstream peer."""

from tests.edge.conftest import peer  # noqa: F401 - a fixture, found here by pytest

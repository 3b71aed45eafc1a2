"""The tools tests' tiny random-init checkpoint (tests/tools/conftest.py), shared with the API tests."""

from tests.reports.conftest import tiny_run  # noqa: F401 (a fixture)

"""Fixtures shared by the end-to-end tests (see harness.py)."""

import pytest

import harness


@pytest.fixture
def procs(tmp_path):
    """A ProcessGroup for this test: every child it starts is stopped at teardown, and the
    children's logs are printed (pytest shows them when the test failed)."""
    group = harness.ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        print(group.describe())
        group.stop_all()
    # A memory error or leak in a child fails the test that provoked it, even when the
    # client side saw nothing wrong.
    reports = group.sanitizer_reports()
    assert not reports, "\n\n".join(reports)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The test CA and certificates (ca, server, cluster, client) for localhost/127.0.0.1."""
    return harness.make_pki(tmp_path_factory.mktemp("pki"))

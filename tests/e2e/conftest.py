"""Fixtures shared by the end-to-end tests (see harness.py)."""

import pytest

import harness


@pytest.fixture
def procs(tmp_path):
    """A ProcessGroup for this test: every child it starts is stopped at teardown, and the
    children's logs are printed (pytest shows them when the test failed). Stopping fails the
    test when a child wrote a sanitizer report (a memory error or leak fails the test that
    provoked it, even when the client side saw nothing wrong)."""
    group = harness.ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        print(group.describe())
        group.stop_all()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The test CA and certificates (ca, server, cluster, client) for localhost/127.0.0.1."""
    return harness.make_pki(tmp_path_factory.mktemp("pki"))


def pytest_sessionfinish(session, exitstatus):
    """A child that no fixture stopped is stopped here, and its sanitizer report (if any)
    fails the run: every process a test starts is checked."""
    failures = []
    for child in harness.STARTED:
        if child.checked:
            continue
        try:
            child.stop()
        except AssertionError as error:
            failures.append(str(error))
    if failures:
        print("\n\n".join(["sanitizer reports from children nobody stopped:"] + failures))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

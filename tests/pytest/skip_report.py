"""skip_report: a pytest plugin (`-p skip_report`) that makes a skip visible to ctest.

pytest exits 0 when every test passed or was skipped, so ctest would report a file whose
tests were all skipped, or partly skipped, as Passed. With this plugin a run that had no
failure but skipped anything exits 77, which ctest reports as skipped (SKIP_RETURN_CODE 77,
set by every pytest-based ctest test), and the skipped node ids with their reasons are:

- printed at the end, one "SKIPPED node-id: reason" line each, and
- written to $SIDECAR_SKIP_LOG when set (removed when nothing was skipped), one "node-id<TAB>reason" line each, where
  tests/run.sh collects them for its summary and its allow-list check under CI=true.

A file with some passes and some skips is therefore not a full pass: it is a skipped ctest
test that names the cases it did not run.
"""

import os

import pytest

SKIP_EXIT_STATUS = 77

_skipped = []


def _reason(report):
    # A skip's longrepr is (path, line, "Skipped: why").
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append((report.nodeid, _reason(report)))


def pytest_collectreport(report):
    # pytest.skip(allow_module_level=True) or importorskip skips a whole file at collection.
    if report.skipped:
        _skipped.append((report.nodeid, _reason(report)))


def pytest_terminal_summary(terminalreporter):
    for nodeid, reason in _skipped:
        terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    log = os.environ.get("SIDECAR_SKIP_LOG")
    if log:
        # The file says what the last run of this ctest test skipped: nothing, no file.
        if _skipped:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            with open(log, "w") as f:
                for nodeid, reason in _skipped:
                    f.write(f"{nodeid}\t{reason}\n")
        elif os.path.exists(log):
            os.remove(log)
    if not _skipped:
        return
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = SKIP_EXIT_STATUS

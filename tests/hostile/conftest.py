"""The hostile battery uses the end-to-end harness and fixtures of tests/e2e unchanged, so
the children it starts are stopped, logged and checked for sanitizer reports the same way."""

import importlib.util
import pathlib
import sys

E2E_DIR = pathlib.Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E_DIR))

_spec = importlib.util.spec_from_file_location("e2e_conftest", E2E_DIR / "conftest.py")
_e2e_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e_conftest)

# Every fixture and hook of tests/e2e/conftest.py, under the same name (the session hook
# stops and checks any child a test left running).
globals().update({name: value for name, value in vars(_e2e_conftest).items()
                  if callable(value) and (hasattr(value, "_pytestfixturefunction")
                                          or name.startswith("pytest_"))})

"""Hypothesis profiles for the Python tests.

HYPOTHESIS_PROFILE=ci (default) keeps the suite quick enough for every push and
for the ASan run (make test-sanitize, ~3-5x slower); HYPOTHESIS_PROFILE=long is
for a soak before a release.
"""
import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,               # timings vary too much under ASan to mean anything
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,             # a failure prints a @reproduce_failure line
)

settings.register_profile("ci", max_examples=80, stateful_step_count=40, **_COMMON)
settings.register_profile("long", max_examples=2500, stateful_step_count=100, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # On a failure Hypothesis imports libcst (to write a patch of the failing
    # example), whose import of mypy_extensions warns; `filterwarnings = error`
    # would turn that into an INTERNALERROR hiding the real failure.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

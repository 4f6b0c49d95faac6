"""Property-based fuzzing of the platform's input parsers, on the real code.

Each test runs FUZZ_EXAMPLES cases (default 150, so the suite stays quick);
`make fuzz` runs them by the hundred thousand. Any input must be accepted
or refused with a DotcloudError, never end in another exception.
"""
import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))

settings.register_profile(
    "fuzz", max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture])
settings.load_profile("fuzz")

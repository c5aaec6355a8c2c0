import os

from hypothesis import HealthCheck, settings

# numba compilation makes the first example slow: no deadline. The "ci" profile is the
# default; FASTMP_HYPOTHESIS=thorough runs ten times more examples.
settings.register_profile("ci", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FASTMP_HYPOTHESIS", "ci"))

"""``make bench`` (``python -m bench.run``): figures of the operator against a sequential SDK
loop, on the services the test harness starts. A program, not part of the test suite."""

"""Starts the real services the integration tests and the demo run against."""

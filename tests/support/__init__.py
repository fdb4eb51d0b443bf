"""Helpers only the tests use: a fake model server, a steady write load, polling."""

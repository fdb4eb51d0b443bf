"""HydraCore instances and their channels."""

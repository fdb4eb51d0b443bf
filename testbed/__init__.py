"""Throwaway servers and isolated Hydra stacks on private ports, shared by the tests and the benchmarks."""

"""Simulated time, CPUs, locks (SimPy) and the cost model."""

"""Workloads (design layer 4): access patterns, enclave programs and trace replay.

``patterns`` and ``trace`` need only NumPy; ``programs`` drives the kernel model.
"""

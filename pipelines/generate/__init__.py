"""Realistic event logs with the faults of the real world, and the faulty live worker."""

"""Feature stages: each computes the same float32 values in Python and in C."""

"""kiloml: machine learning for microcontrollers, from sensor recordings to a verified C library."""

__version__ = "0.1.0"

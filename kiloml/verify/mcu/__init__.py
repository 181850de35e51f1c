"""Level 2 verification: the library cross-compiled for a Cortex-M and run in QEMU.

* ``toolchain``: finds arm-none-eabi-gcc, binutils, newlib and qemu-system-arm.
* ``build``: cross-compiles the library and links it (budget probe, harness).
* ``run``: runs the harness in QEMU with the instruction-counting plugin.
* ``verify``: parity and measurements for one target.
"""

"""Open the device's serial port (or a pyserial URL such as socket://host:port) for
reading, with each way it can fail as one line."""

from __future__ import annotations

import contextlib
import errno
import re
from typing import Any

from kiloml.errors import KilomlError

READ_TIMEOUT_S = 0.05  # one read waits at most this long: the loop checks its clocks


def open_port(port: str, baud: int) -> Any:
    """A pyserial port object, opened exclusively (another program reading the same port
    would take bytes from the capture at random)."""
    import serial

    if baud <= 0:  # 0 would be POSIX's "hang up", not a rate
        raise KilomlError(f"--baud {baud}: a baud rate is a positive number of bits per "
                          f"second (devices usually use 115200)")
    is_url = "://" in port
    options: dict[str, Any] = {"baudrate": baud, "timeout": READ_TIMEOUT_S}
    if not is_url:
        options["exclusive"] = True
    try:
        handle = serial.serial_for_url(port, do_not_open=True, **options)
    except (ValueError, OverflowError) as exc:
        raise KilomlError(f"serial port '{port}' refuses baud rate {baud}: {exc}") from None
    except serial.SerialException as exc:  # an unknown URL scheme
        raise KilomlError(f"cannot use '{port}' as a serial port: {_reason(exc)}") from None
    try:
        handle.open()
    except (ValueError, OverflowError) as exc:
        raise KilomlError(f"serial port '{port}' refuses baud rate {baud}: {exc}") from None
    except serial.SerialException as exc:
        raise _open_error(port, baud, exc) from None
    except OSError as exc:
        raise _open_error(port, baud, exc) from None
    with contextlib.suppress(serial.SerialException, OSError):
        handle.reset_input_buffer()  # what the port held before the capture is not it
    return handle


def _open_error(port: str, baud: int, exc: BaseException) -> KilomlError:
    text = str(exc)
    code = getattr(exc, "errno", None)
    if "exclusively lock" in text or code in (errno.EBUSY, errno.EAGAIN):
        return KilomlError(f"serial port '{port}' is busy: another program has it open "
                           f"(close it, e.g. a serial monitor or another capture)")
    if code == errno.ENOENT or "No such file" in text:
        return KilomlError(f"serial port '{port}' does not exist (on Linux: /dev/ttyACM0, "
                           f"/dev/ttyUSB0 ...; `ls /dev/serial/by-id/` lists attached devices)")
    if code == errno.EACCES or "Permission denied" in text:
        return KilomlError(f"serial port '{port}': permission denied (on Linux add yourself "
                           f"to the group owning it, usually 'dialout')")
    if "baud" in text.lower() or code == errno.EINVAL:
        return KilomlError(f"serial port '{port}' refuses baud rate {baud}: {_reason(exc)}")
    return KilomlError(f"cannot open serial port '{port}': {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    # pyserial repeats the errno in its text: "[Errno 2] could not open port X: [Errno 2] ..."
    text = re.sub(r"\[Errno -?\d+\]\s*", "", str(exc)).strip()
    return text or type(exc).__name__

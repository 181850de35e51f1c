"""`kiloml capture`: record labelled sensor data from a device over a serial port.

text_protocol  lines of numbers, as Edge Impulse's data forwarder reads them
kml_protocol   kiloml's framed protocol (COBS, CRC-16/CCITT-FALSE; docs/capture_protocol.md)
port           opening a serial port or a socket:// URL, one-line errors
session        the capture loop: bytes in, samples and link statistics out
recording      the CSV and JSON written into OUT/LABEL/ (atomically)
report         rate, jitter, dropped and corrupt frames: figures, JSON and printed lines
command        the `kiloml capture` command
"""

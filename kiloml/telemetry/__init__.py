"""Telemetry from devices in the field: the kml_telemetry_v1 record (codec, flags, JSON
lines) and the fleet database (ingest, report). docs/telemetry_format.md is the spec."""

"""The on-device monitor (issue 16): drift, out-of-range, stuck channels, confidence,
OOD score and Page-Hinkley change detection after the decision layer; the Python twin of
kiloml/runtime/kml_monitor.c and its kml_telemetry_v1 record."""

from kiloml.monitor.config import MonitorConfig, MonitorParams, MonitorThresholds
from kiloml.monitor.fit import fit_monitor, importances_of
from kiloml.monitor.flags import FLAGS, flag_names
from kiloml.monitor.twin import Monitor, MonitorSteps

__all__ = ["FLAGS", "Monitor", "MonitorConfig", "MonitorParams", "MonitorSteps",
           "MonitorThresholds", "fit_monitor", "flag_names", "importances_of"]

"""Shadow / A-B on the device (issue 17 part 5): a candidate model runs beside the
production model on the same windows in one firmware image, and the disagreements are
counted into a kml_shadow_v1 telemetry record. `kiloml diff` on the same recordings
predicts the count exactly (both are the compiled C libraries)."""

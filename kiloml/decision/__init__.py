"""The decision layer: thresholds, "uncertain", smoothing and hysteresis after the model."""

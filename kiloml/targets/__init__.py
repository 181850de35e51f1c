"""MCU target profiles (data files) and budget checks."""

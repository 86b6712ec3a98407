"""Calibration: activation ranges from real images, cached by model, data, method and sample count."""

from cunet.calib.calibrate import Method, Ranges, calibrate, calibrate_inputs

__all__ = ["Method", "Ranges", "calibrate", "calibrate_inputs"]

"""Calibration: activation ranges from real images, cached by model, data, method and sample count."""

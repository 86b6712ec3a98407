"""Training: the CU-Net trainer, its checkpoints and its loop."""

"""Datasets in their real formats (300-W `.pts`, MPII JSON, COCO keypoints), synthetic data, augmentation, targets
and decoding. Every module here uses 0-based pixel coordinates (see `cunet.data.preprocess`)."""

"""The CU-Net model: `CUNet`, its frozen `CUNetConfig`, and the named `VARIANTS`."""

from cunet.model.config import VARIANTS, CUNetConfig, get_variant, supervised_unets
from cunet.model.cunet import CUNet, build_model, count_parameters

__all__ = ["CUNet", "CUNetConfig", "VARIANTS", "build_model", "count_parameters", "get_variant", "supervised_unets"]

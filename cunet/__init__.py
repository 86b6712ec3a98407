"""cunet: train, compile and evaluate CU-Net landmark localizers (Tang et al., BMVC/ECCV 2018).

Importing this package is cheap: it pulls in neither torch nor any inference runtime. The heavy parts live in
the subpackages (`cunet.model`, `cunet.data`, `cunet.train`, `cunet.compile`, `cunet.calib`, `cunet.evaluate`,
`cunet.runtime`) and the command line in `cunet.cli`.
"""

from cunet.errors import CunetError

__version__ = "0.1.0"
__all__ = ["CunetError", "__version__"]

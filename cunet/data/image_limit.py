"""The decompression-bomb guard: an image's header-declared size is checked before a single pixel is decoded.

A small file can declare a huge image (a 1.3 MB PNG of 36000 x 36000 pixels decodes to 3.9 GB of BGR). Without
this check OpenCV either tries to allocate that or stops with a ~45-line traceback from its own limit. Every
image reader of cunet (`cunet.data.dataset.read_image`, the calibration reader) calls `check_pixel_limit` first,
so `data check`, `predict`, `evaluate`, `calibrate`, `train` and `bench` all report such a file in one line.

The limit is `DEFAULT_MAX_PIXELS` (2**28 = 268,435,456 pixels, e.g. 16384 x 16384; 768 MiB decoded as BGR uint8)
unless the environment variable `CUNET_MAX_IMAGE_PIXELS` sets another (a positive integer). OpenCV keeps its own
limit of 2**30 pixels on top (its variable `CV_IO_MAX_IMAGE_PIXELS`).

The header is read with Pillow, which parses only the header on open (PNG IHDR, JPEG SOF, BMP, TIFF, WebP, ...).
A file Pillow cannot identify is left to the decoder, which reports it as unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path

from cunet.errors import CunetError

__all__ = ["DEFAULT_MAX_PIXELS", "ENV_VAR", "max_pixels", "declared_size", "check_pixel_limit"]

DEFAULT_MAX_PIXELS = 2**28
ENV_VAR = "CUNET_MAX_IMAGE_PIXELS"


def max_pixels() -> int:
    """The pixel limit in force: `CUNET_MAX_IMAGE_PIXELS` when set, else `DEFAULT_MAX_PIXELS`.

    Raises:
        CunetError: the variable is set but is not a positive integer.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise CunetError(f"{ENV_VAR}={raw!r}: must be a positive number of pixels (default {DEFAULT_MAX_PIXELS})")
    return value


def declared_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) as the file's header declares them, without decoding; None when the format is unknown."""
    from PIL import Image

    # Pillow's own bomb check would raise before telling the size; ours is the one that decides and names the file.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, SyntaxError):  # not an image Pillow knows, or a broken header
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_pixel_limit(path: str | os.PathLike) -> None:
    """Raise when the header of `path` declares more pixels than `max_pixels()`.

    Raises:
        CunetError: one line naming the file, its declared size and the limit (and how to raise it).
    """
    size = declared_size(path)
    limit = max_pixels()
    if size is not None and size[0] * size[1] > limit:
        w, h = size
        raise CunetError(f"{Path(path)}: image declares {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                         f"(a decompression bomb, or set {ENV_VAR} to allow it)")

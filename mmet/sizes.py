"""Input sizes: the one place that turns sizes into pixels and costs.

A size is an ``int`` (square) or an ``(h, w)`` pair, as mmpretrain's
transforms take it. A bandwidth is relative to a full size; its pixel size
is rounded to an even number of pixels (the Fourier crop keeps a centred
block of the spectrum, symmetric for even sizes), except at full size,
which stays what it is. The compute of an image counts as proportional to
its pixels. Plain Python: no torch, no mmengine.
"""
import math
from typing import Sequence, Tuple, Union

Size = Union[int, Tuple[int, int]]

#: The input size of the papers' ImageNet runs, which their bandwidths
#: (160, 192, ...) and search candidates are given in.
REFERENCE_SIZE = 224

#: The smallest bandwidth in pixels a curriculum may ask for: below it the
#: low-pass keeps too little of an image for a model to learn from (a 2x2
#: crop of a 32 px image is its mean colour and one frequency).
MIN_PIXELS = 8


def hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``(h, w)`` of a size."""
    if isinstance(size, bool):
        raise TypeError(f'A size is an int or (h, w), got {size!r}.')
    if isinstance(size, (int, float)) or hasattr(size, '__index__'):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def square(size: Union[int, Sequence[int]]) -> Size:
    """``(s, s)`` as ``s``: the form configs and messages use."""
    h, w = hw(size)
    return h if h == w else (h, w)


def _even(x: float) -> int:
    """The nearest even number of pixels, at least 2."""
    return max(2, 2 * int(math.floor(x / 2 + 0.5)))


def at_bandwidth(bandwidth: float, full_size: Union[int, Sequence[int]]
                 ) -> Size:
    """The pixel size of ``bandwidth`` (relative, in (0, 1]) of a full size,
    rounded to even; the full size itself at ``bandwidth >= 1``."""
    if bandwidth >= 1:
        return square(full_size)
    h, w = hw(full_size)
    return square((_even(bandwidth * h), _even(bandwidth * w)))


def pixel_cost(bandwidth: float,
               full_size: Union[int, Sequence[int], None] = None) -> float:
    """Compute of an image at ``bandwidth`` against one at full size.

    Without a full size, ``bandwidth ** 2``; with one, the pixel ratio of
    the even size really trained (:func:`at_bandwidth`).
    """
    if full_size is None:
        return bandwidth**2
    h, w = hw(at_bandwidth(bandwidth, full_size))
    full_h, full_w = hw(full_size)
    return (h * w) / (full_h * full_w)


def describe(size: Size) -> str:
    """``'28'`` or ``'24x32'``."""
    h, w = hw(size)
    return str(h) if h == w else f'{h}x{w}'

"""Convolution and pooling geometry: what CONV, POOL and UNPOOL carry in their key field, and the
pixel maps that turn a convolution into one integer product (implicit GEMM).

Images are stored pixel by pixel: B images of H x W pixels with C channels are
the 2-D tensor (B*H*W, C) whose row ``b*H*W + y*W + x`` holds pixel (y, x) of
image b (NHWC rows; each row padded to whole memory words like every tensor).
A convolution's weights are the 2-D tensor (O, KH*KW*Cp): row o holds, tap by
tap (kh, kw row-major), the Cp = ceil(C / lanes) * lanes weights of that tap,
so every tap starts on a word boundary (padding channels have weight 0).

The key field (32 bits) of a geometry instruction:

    [6:0]   height        H of the input image, 1..127
    [13:7]  width         W of the input image, 1..127
    [17:14] kh            kernel (pooling window) height, 1..15
    [21:18] kw            kernel (pooling window) width, 1..15
    [22]    stride_log2   stride 1 or 2 (both axes)
    [24:23] pad_h         zero rows above and below, 0..3
    [26:25] pad_w         zero columns left and right, 0..3
    [31:27] batch         images B, 1..31

Output size: Ho = (H + 2*pad_h - kh) // stride + 1 (likewise Wo).  A tap
(kh, kw) of output pixel (yo, xo) reads input pixel (yo*stride + kh - pad_h,
xo*stride + kw - pad_w), or zero outside the image: :meth:`Geometry.im2col`.
A 1-D signal is an image of height 1 with a 1 x K kernel and pad_h 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: name -> (low bit, width) in the 32-bit key field
KEY_FIELDS = {
    "height": (0, 7),
    "width": (7, 7),
    "kh": (14, 4),
    "kw": (18, 4),
    "stride_log2": (22, 1),
    "pad_h": (23, 2),
    "pad_w": (25, 2),
    "batch": (27, 5),
}


@dataclass(frozen=True)
class Geometry:
    """One convolution or pooling window over a batch of images (see the module docstring)."""

    batch: int
    height: int
    width: int
    kh: int
    kw: int
    stride: int = 1
    pad_h: int = 0
    pad_w: int = 0

    def __post_init__(self):
        for name in ("batch", "height", "width", "kh", "kw"):
            low, width = KEY_FIELDS[name]
            if not 1 <= getattr(self, name) < 1 << width:
                raise ValueError(f"geometry {name}={getattr(self, name)} outside 1..{(1 << width) - 1}")
        if self.stride not in (1, 2):
            raise ValueError(f"geometry stride={self.stride} is not 1 or 2")
        for name in ("pad_h", "pad_w"):
            if not 0 <= getattr(self, name) <= 3:
                raise ValueError(f"geometry {name}={getattr(self, name)} outside 0..3")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(f"a {self.kh}x{self.kw} window does not fit a {self.height}x{self.width} image "
                             f"with padding {self.pad_h}x{self.pad_w}")

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.pad_h - self.kh) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.pad_w - self.kw) // self.stride + 1

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def in_rows(self) -> int:
        """Rows of the input tensor: B*H*W pixels."""
        return self.batch * self.height * self.width

    @property
    def out_rows(self) -> int:
        """Rows of the output tensor: B*Ho*Wo pixels."""
        return self.batch * self.out_height * self.out_width

    def encode(self) -> int:
        fields = {"batch": self.batch, "height": self.height, "width": self.width, "kh": self.kh, "kw": self.kw,
                  "stride_log2": self.stride.bit_length() - 1, "pad_h": self.pad_h, "pad_w": self.pad_w}
        return sum(value << KEY_FIELDS[name][0] for name, value in fields.items())

    @classmethod
    def decode(cls, key: int) -> "Geometry":
        """The geometry of a key field; ValueError names what does not make one."""
        fields = {name: (key >> low) & ((1 << width) - 1) for name, (low, width) in KEY_FIELDS.items()}
        stride = 1 << fields.pop("stride_log2")
        return cls(stride=stride, **fields)

    def im2col(self) -> np.ndarray:
        """(out_rows, taps) input row of each output pixel's tap, -1 where the tap falls in the padding."""
        b, yo, xo = np.meshgrid(np.arange(self.batch), np.arange(self.out_height), np.arange(self.out_width),
                                indexing="ij")
        rows = []
        for kh in range(self.kh):
            for kw in range(self.kw):
                yi = yo * self.stride + kh - self.pad_h
                xi = xo * self.stride + kw - self.pad_w
                inside = (yi >= 0) & (yi < self.height) & (xi >= 0) & (xi < self.width)
                rows.append(np.where(inside, (b * self.height + yi) * self.width + xi, -1).reshape(-1))
        return np.stack(rows, axis=1)

    def is_pool(self) -> bool:
        """Windows that tile the image exactly (stride = window, no padding) with a power-of-two area."""
        area = self.taps
        return (self.pad_h == 0 and self.pad_w == 0 and self.stride == 1 and self.height % self.kh == 0 and self.width % self.kw == 0
                and area & (area - 1) == 0)

    def pool_map(self) -> "PoolMap":
        """Index maps of the geometry's non-overlapping kh x kw pooling windows."""
        return PoolMap(self)


class PoolMap:
    """Index maps of non-overlapping pooling windows kh x kw over the geometry's images."""

    def __init__(self, g: Geometry):
        self.g = g
        self.out_height, self.out_width = g.height // g.kh, g.width // g.kw
        self.out_rows = g.batch * self.out_height * self.out_width
        self.shift = (g.taps).bit_length() - 1        # log2 of the window area

    def windows(self) -> np.ndarray:
        """(out_rows, taps) input rows of each window."""
        g = self.g
        b, yo, xo = np.meshgrid(np.arange(g.batch), np.arange(self.out_height), np.arange(self.out_width),
                                indexing="ij")
        rows = [((b * g.height + yo * g.kh + kh) * g.width + xo * g.kw + kw).reshape(-1)
                for kh in range(g.kh) for kw in range(g.kw)]
        return np.stack(rows, axis=1)

    def owner(self) -> np.ndarray:
        """(in_rows,) the window (output row) each input pixel belongs to."""
        g = self.g
        b, y, x = np.meshgrid(np.arange(g.batch), np.arange(g.height), np.arange(g.width), indexing="ij")
        return ((b * self.out_height + y // g.kh) * self.out_width + x // g.kw).reshape(-1)

"""Image files: PNG/JPEG (8- and 16-bit) and Radiance ``.hdr`` (RGBE), plus contact sheets.

All images are float32 tensors ``[H,W,C]`` with row 0 = the *top* row of the file (ordinary image
order). LDR values are in [0,1]; no colour conversion happens here (files hold whatever the caller
wrote: usually sRGB for LDR and linear radiance for HDR). Texture loaders flip rows themselves.

Example:
    >>> import torch, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> write_png(os.path.join(d, "a.png"), torch.full((2, 3, 3), 0.5))
    >>> read_image(os.path.join(d, "a.png")).shape
    torch.Size([2, 3, 3])
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, InputError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _existing_file(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Image file {p} does not exist; check the path.")
    return p


def _image_tensor(name: str, img, channels=(1, 3, 4)) -> np.ndarray:
    """Validate an image argument ``[H,W,C]`` and return it as a float32 numpy array."""
    if isinstance(img, torch.Tensor):
        a = img.detach().to("cpu", torch.float32).numpy()
    else:
        a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in channels or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{name} must have shape [H,W,C] with C in {channels}; got {tuple(a.shape)}.")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values; clean it before writing.")
    return a


# ----------------------------------------------------------------------------------------------- LDR


def read_image(path) -> torch.Tensor:
    """Read a PNG/JPEG/BMP/TGA (or ``.hdr``) file as float32 ``[H,W,C]``, C = 3 or 4 as stored.

    8-bit files are divided by 255, 16-bit PNGs by 65535; grey images are expanded to RGB
    (grey+alpha to RGBA), palette images to RGB(A). ``.hdr`` files are passed to :func:`read_hdr`.

    Example:
        >>> img = read_image("texture.png")  # doctest: +SKIP
        >>> img.shape, img.dtype             # doctest: +SKIP
        (torch.Size([512, 512, 3]), torch.float32)
    """
    p = _existing_file(path)
    if p.suffix.lower() == ".hdr":
        return read_hdr(p)
    with open(p, "rb") as fh:
        head = fh.read(32)
    if head.startswith(_PNG_SIGNATURE) and len(head) >= 26 and head[24] == 16:
        a = _read_png16(p)
    else:
        a = _read_with_pillow(p)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 2:
        a = np.concatenate([np.repeat(a[:, :, :1], 3, axis=2), a[:, :, 1:]], axis=2)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _read_with_pillow(p: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float32)[:, :, None] / 65535.0
                return np.clip(a, 0.0, 1.0)
            if mode == "F":
                return np.asarray(im, dtype=np.float32)[:, :, None]
            has_alpha = "A" in im.getbands() or "transparency" in im.info
            if mode == "L":
                return np.asarray(im, dtype=np.float32)[:, :, None] / 255.0
            if mode == "LA":
                return np.asarray(im, dtype=np.float32) / 255.0
            im = im.convert("RGBA" if has_alpha else "RGB")
            return np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Image file {p} could not be read ({exc}); re-save it as PNG or JPEG.") from None


def _read_png16(p: Path) -> np.ndarray:
    """Decode a 16-bit non-interlaced PNG (Pillow truncates 16-bit colour PNGs to 8 bits)."""
    data = p.read_bytes()
    pos, idat, ihdr = 8, [], None
    try:
        while pos < len(data):
            length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if ctype == b"IHDR":
                ihdr = struct.unpack(">IIBBBBB", body)
            elif ctype == b"IDAT":
                idat.append(body)
            elif ctype == b"IEND":
                break
            pos += 12 + length
        w, h, depth, ctype_code, _, _, interlace = ihdr
        raw = zlib.decompress(b"".join(idat))
    except (struct.error, TypeError, zlib.error) as exc:
        raise DataError(f"Image file {p} is a corrupt PNG ({exc}); re-export it.") from None
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype_code)
    if channels is None or interlace != 0:
        return _read_with_pillow(p)  # interlaced or odd 16-bit layouts: Pillow's 8-bit result
    bpp = 2 * channels
    stride = w * bpp
    if len(raw) < h * (stride + 1):
        raise DataError(f"Image file {p} is truncated; re-export it.")
    rows = np.frombuffer(raw, dtype=np.uint8, count=h * (stride + 1)).reshape(h, stride + 1)
    out = _png_unfilter(rows[:, 0].copy(), np.ascontiguousarray(rows[:, 1:]), bpp)
    vals = out.reshape(h, w * channels * 2).view(">u2").reshape(h, w, channels)
    return vals.astype(np.float32) / 65535.0


def _png_unfilter(filters: np.ndarray, rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG scanline filters (None, Sub, Up, Average, Paeth); rows ``[H,stride]`` uint8."""
    return _unfilter_kernel()(filters, rows, bpp)


_KERNEL = None


def _unfilter_kernel():
    # Average and Paeth are byte-sequential, so the loop is compiled (numba is already a dependency);
    # compiled lazily because 16-bit PNGs are rare.
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(cache=True)
        def unfilter(filters, rows, bpp):
            h, n = rows.shape
            out = np.zeros((h, n), dtype=np.uint8)
            for y in range(h):
                f = filters[y]
                for i in range(n):
                    x = np.int32(rows[y, i])
                    a = np.int32(out[y, i - bpp]) if i >= bpp else np.int32(0)
                    b = np.int32(out[y - 1, i]) if y > 0 else np.int32(0)
                    c = np.int32(out[y - 1, i - bpp]) if (y > 0 and i >= bpp) else np.int32(0)
                    if f == 1:
                        x += a
                    elif f == 2:
                        x += b
                    elif f == 3:
                        x += (a + b) >> 1
                    elif f == 4:
                        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                        x += a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                    out[y, i] = np.uint8(x & 255)
            return out

        _KERNEL = unfilter
    return _KERNEL


def write_png(path, img) -> None:
    """Write ``img[H,W,C]`` (values in [0,1], C = 1, 3 or 4) as an 8-bit PNG with deterministic bytes.

    Values are clipped to [0,1] and rounded (``round(255 x)``); no colour conversion. Parent
    folders are created.

    Example:
        >>> write_png("/tmp/red.png", torch.tensor([[[1.0, 0.0, 0.0]]]))
    """
    data = png_bytes(img)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def png_bytes(img) -> bytes:
    """Encode ``img[H,W,C]`` in [0,1] as 8-bit PNG bytes (what :func:`write_png` writes).

    Written by hand rather than with Pillow so the bytes never depend on a library's metadata choices.

    Example:
        >>> png_bytes(torch.zeros(1, 1, 3))[:4]
        b'\\x89PNG'
    """
    a = _image_tensor("img", img)
    q = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w, c = q.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), q.reshape(h, w * c)], axis=1).tobytes()
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, 6)) + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


# ----------------------------------------------------------------------------------------------- HDR


def read_hdr(path) -> torch.Tensor:
    """Read a Radiance RGBE ``.hdr`` file as float32 ``[H,W,3]`` (linear radiance, row 0 = top).

    Supports flat (uncompressed) scanlines and the usual run-length encoded ones
    (``2 2 hi lo`` scanline headers), and the ``-Y H +X W`` / ``+Y H +X W`` orientations.
    Each pixel is ``(r, g, b) = (R + 0.5, G + 0.5, B + 0.5) * 2^(E - 136)`` (0 when E = 0).

    Example:
        >>> env = read_hdr("probe.hdr")   # doctest: +SKIP
        >>> env.shape                      # doctest: +SKIP
        torch.Size([256, 512, 3])
    """
    p = _existing_file(path)
    data = p.read_bytes()
    if not (data.startswith(b"#?RADIANCE") or data.startswith(b"#?RGBE") or data.startswith(b"#?")):
        raise DataError(f"{p} is not a Radiance .hdr file (missing '#?RADIANCE' header); re-export it as RGBE .hdr.")
    end = data.find(b"\n\n")
    if end < 0:
        raise DataError(f"{p} has no end of header; the .hdr file is truncated or corrupt.")
    header = data[:end].decode("latin-1")
    fmt = re.search(r"^FORMAT=(\S+)", header, re.M)
    if fmt and fmt.group(1) != "32-bit_rle_rgbe":
        raise DataError(f"{p} uses format {fmt.group(1)}; only 32-bit_rle_rgbe .hdr files are supported, "
                        f"re-export it as RGB RGBE.")
    nl = data.find(b"\n", end + 2)
    res_line = data[end + 2:nl].decode("latin-1").strip() if nl >= 0 else ""
    m = re.fullmatch(r"([-+])Y (\d+) ([-+])X (\d+)", res_line)
    if m is None:
        raise DataError(f"{p} has an unsupported resolution line {res_line!r}; re-export it with '-Y H +X W'.")
    h, w = int(m.group(2)), int(m.group(4))
    try:
        rgbe = _decode_rgbe(memoryview(data)[nl + 1:], h, w)
    except (IndexError, ValueError) as exc:
        raise DataError(f"{p} has corrupt or truncated pixel data ({exc}); re-export the .hdr file.") from None
    if m.group(1) == "+":
        rgbe = rgbe[::-1]
    if m.group(3) == "-":
        rgbe = rgbe[:, ::-1]
    e = rgbe[..., 3].astype(np.int32)
    scale = np.where(e > 0, np.ldexp(np.float32(1.0), e - 136), 0.0).astype(np.float32)
    img = (rgbe[..., :3].astype(np.float32) + 0.5) * scale[..., None]
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))


def _decode_rgbe(buf: memoryview, h: int, w: int) -> np.ndarray:
    arr = np.frombuffer(buf, dtype=np.uint8)
    out = np.empty((h, w, 4), dtype=np.uint8)
    pos = 0
    for y in range(h):
        rle = (8 <= w < 32768 and pos + 4 <= arr.size and arr[pos] == 2 and arr[pos + 1] == 2
               and (arr[pos + 2] & 0x80) == 0)
        if not rle:
            if pos + 4 * w > arr.size:
                raise ValueError("scanline ends early")
            if y == 0:
                # A flat file: every row is flat, so read them all in one go.
                out[:] = arr[:4 * w * h].reshape(h, w, 4) if arr.size >= 4 * w * h else _short()
                return out
            out[y] = arr[pos:pos + 4 * w].reshape(w, 4)
            pos += 4 * w
            continue
        if (int(arr[pos + 2]) << 8 | int(arr[pos + 3])) != w:
            raise ValueError(f"scanline {y} length does not match width {w}")
        pos += 4
        for ch in range(4):
            x = 0
            line = out[y, :, ch]
            while x < w:
                count = int(arr[pos])
                if count > 128:
                    count -= 128
                    if x + count > w:
                        raise ValueError("run overflows the scanline")
                    line[x:x + count] = arr[pos + 1]
                    pos += 2
                else:
                    if count == 0 or x + count > w:
                        raise ValueError("bad run length")
                    line[x:x + count] = arr[pos + 1:pos + 1 + count]
                    pos += 1 + count
                x += count
    return out


def _short():
    raise ValueError("pixel data ends early")


def write_hdr(path, img, rle: bool = True) -> None:
    """Write linear radiance ``img[H,W,3]`` (values >= 0) as a Radiance RGBE ``.hdr`` file.

    Each pixel is stored as a shared exponent ``E`` with ``max(r,g,b) = m * 2^(E-128)``, ``0.5 <= m < 1``
    and mantissas ``floor(c / 2^(E-128) * 256)``; relative error is below 1/256 of the brightest channel.
    Scanlines are run-length encoded when ``rle`` (the usual format) and the width allows it.
    Negative values are clipped to 0. Output bytes are deterministic.

    Example:
        >>> write_hdr("/tmp/sky.hdr", torch.rand(16, 32, 3) * 10)
    """
    a = _image_tensor("img", img, channels=(3,))
    a = np.maximum(a, 0.0)
    h, w, _ = a.shape
    rgbe = _float_to_rgbe(a)
    out = [b"#?RADIANCE\n", b"# written by unrender\n", b"FORMAT=32-bit_rle_rgbe\n\n",
           f"-Y {h} +X {w}\n".encode("ascii")]
    if rle and 8 <= w < 32768:
        for y in range(h):
            out.append(bytes([2, 2, w >> 8, w & 255]))
            for ch in range(4):
                out.append(_rle_encode(rgbe[y, :, ch]))
    else:
        out.append(rgbe.tobytes())
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"".join(out))


def _float_to_rgbe(a: np.ndarray) -> np.ndarray:
    v = a.max(axis=2).astype(np.float64)
    mant, exp = np.frexp(v)  # v = mant * 2^exp with mant in [0.5, 1)
    scale = np.where(v > 1e-32, mant * 256.0 / np.where(v > 1e-32, v, 1.0), 0.0)
    rgbe = np.zeros(a.shape[:2] + (4,), dtype=np.uint8)
    rgbe[..., :3] = np.clip(np.floor(a * scale[..., None]), 0, 255).astype(np.uint8)
    rgbe[..., 3] = np.where(v > 1e-32, np.clip(exp + 128, 0, 255), 0).astype(np.uint8)
    return rgbe


def _rle_encode(line: np.ndarray) -> bytes:
    """Radiance per-channel RLE: runs of >= 4 equal bytes as (128+n, value), the rest as literal dumps."""
    n = line.size
    # Start of each maximal run of equal bytes, and its length.
    change = np.flatnonzero(np.diff(line.astype(np.int16)) != 0) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [n]]))
    out = bytearray()
    literal_start = 0
    vals = line.tobytes()

    def flush_literal(lo, hi):
        while lo < hi:
            k = min(128, hi - lo)
            out.append(k)
            out.extend(vals[lo:lo + k])
            lo += k

    for s, ln in zip(starts.tolist(), lengths.tolist()):
        if ln >= 4:
            flush_literal(literal_start, s)
            left, v = ln, vals[s]
            while left >= 4:  # a tail shorter than 4 goes back into the literal dump
                k = min(127, left)
                out.append(128 + k)
                out.append(v)
                left -= k
            literal_start = s + ln - left
    flush_literal(literal_start, n)
    return bytes(out)


# ------------------------------------------------------------------------------------------ layout


def contact_sheet(images, columns: int = 4, pad: int = 2, background: float = 1.0) -> torch.Tensor:
    """Tile images ``[H_i,W_i,C_i]`` into one grid image ``[H',W',C]``, row-major, ``columns`` per row.

    Each cell is as large as the largest image; smaller images sit in their cell's top-left corner.
    ``C`` is 4 if any image has alpha (others get alpha 1), else 3; grey images become RGB. Cells are
    separated by ``pad`` pixels of ``background``.

    Example:
        >>> sheet = contact_sheet([torch.zeros(8, 8, 3), torch.ones(8, 8, 3), torch.ones(4, 6, 4)], columns=2, pad=0)
        >>> tuple(sheet.shape)
        (16, 16, 4)
    """
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise InputError("images must be a non-empty list of [H,W,C] tensors.")
    if int(columns) < 1:
        raise InputError(f"columns must be a positive integer; got {columns!r}.")
    arrs = []
    for i, im in enumerate(images):
        t = torch.as_tensor(im).detach().to("cpu", torch.float32)
        if t.dim() == 2:
            t = t[:, :, None]
        if t.dim() != 3 or t.shape[2] not in (1, 3, 4):
            raise InputError(f"images[{i}] must have shape [H,W,C] with C in (1, 3, 4); got {tuple(t.shape)}.")
        if t.shape[2] == 1:
            t = t.expand(-1, -1, 3)
        arrs.append(t)
    c = 4 if any(t.shape[2] == 4 for t in arrs) else 3
    ch = max(t.shape[0] for t in arrs)
    cw = max(t.shape[1] for t in arrs)
    cols = min(int(columns), len(arrs))
    rows = (len(arrs) + cols - 1) // cols
    sheet = torch.full((rows * ch + (rows - 1) * pad, cols * cw + (cols - 1) * pad, c), float(background))
    if c == 4:
        sheet[..., 3] = 1.0
    for i, t in enumerate(arrs):
        r, k = divmod(i, cols)
        y0, x0 = r * (ch + pad), k * (cw + pad)
        if c == 4 and t.shape[2] == 3:
            t = torch.cat([t, torch.ones_like(t[..., :1])], dim=-1)
        sheet[y0:y0 + t.shape[0], x0:x0 + t.shape[1]] = t
    return sheet

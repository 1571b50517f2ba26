import struct
import zlib

import numpy as np
import pytest
import torch

from unrender.errors import DataError
from unrender.io.images import contact_sheet, png_bytes, read_hdr, read_image, write_hdr, write_png


def _png16(path, a, filters):
    """Write a 16-bit RGB PNG by hand with the given per-row filter types (Pillow cannot)."""
    h, w, c = a.shape
    raw = a.astype(">u2").reshape(h, w * c).view(np.uint8).astype(np.int32)
    bpp = 2 * c
    out = b""
    for y in range(h):
        line, prev = raw[y], raw[y - 1] if y > 0 else np.zeros_like(raw[0])
        left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        f = filters[y % len(filters)]
        if f == 0:
            enc = line
        elif f == 1:
            enc = line - left
        elif f == 2:
            enc = line - prev
        elif f == 3:
            enc = line - (left + prev) // 2
        else:
            pa, pb, pc = np.abs(prev - ul), np.abs(left - ul), np.abs(left + prev - 2 * ul)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, ul))
            enc = line - pred
        out += bytes([f]) + (enc & 255).astype(np.uint8).tobytes()

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b""))


def test_png_round_trip_rgb_rgba_and_determinism(tmp_path):
    g = torch.Generator().manual_seed(0)
    for c in (3, 4):
        img = torch.rand(13, 17, c, generator=g)
        write_png(tmp_path / f"a{c}.png", img)
        back = read_image(tmp_path / f"a{c}.png")
        assert back.shape == (13, 17, c) and back.dtype == torch.float32
        assert (back - img).abs().max() <= 0.5 / 255 + 1e-6
        assert png_bytes(img) == (tmp_path / f"a{c}.png").read_bytes()


def test_png16_all_filters(tmp_path):
    a = np.random.default_rng(0).integers(0, 65536, size=(10, 9, 3))
    _png16(tmp_path / "x.png", a, filters=[0, 1, 2, 3, 4])
    back = read_image(tmp_path / "x.png").numpy()
    assert np.abs(back - a / 65535.0).max() < 1e-6


def test_jpeg_reads(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "a.jpg")
    img = read_image(tmp_path / "a.jpg")
    assert img.shape == (8, 8, 3) and abs(float(img.mean()) - 128 / 255) < 0.02


@pytest.mark.parametrize("rle", [True, False])
def test_hdr_round_trip(tmp_path, rle):
    g = torch.Generator().manual_seed(1)
    img = torch.rand(9, 40, 3, generator=g) * torch.tensor([1.0, 20.0, 300.0])
    img[2:5] = torch.tensor([2.0, 0.5, 0.0])  # long runs exercise the run-length path
    write_hdr(tmp_path / "a.hdr", img, rle=rle)
    back = read_hdr(tmp_path / "a.hdr")
    assert back.shape == img.shape
    rel = (back - img).abs() / img.amax(-1, keepdim=True).clamp_min(1e-6)
    assert rel.max() < 1.0 / 128


def test_hdr_rle_decode_of_hand_made_file(tmp_path):
    # Width 8, two rows encoded by hand; value = (mantissa + 0.5) * 2^(e - 136).
    w = 8
    rows = []
    rows.append(bytes([2, 2, 0, w]) + bytes([128 + 8, 128]) + bytes([128 + 8, 64]) + bytes([128 + 8, 0])
                + bytes([128 + 8, 129]))
    rows.append(bytes([2, 2, 0, w]) + bytes([8]) + bytes(range(8)) + bytes([128 + 8, 0]) + bytes([128 + 8, 0])
                + bytes([4, 128, 128, 128, 128, 128 + 4, 130]))
    data = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 8\n" + b"".join(rows)
    (tmp_path / "h.hdr").write_bytes(data)
    img = read_hdr(tmp_path / "h.hdr")
    assert img.shape == (2, 8, 3)
    assert torch.allclose(img[0, :, 0], torch.full((8,), 128.5 / 128))
    assert torch.allclose(img[0, :, 1], torch.full((8,), 64.5 / 128))
    assert torch.allclose(img[1, :4, 0], (torch.arange(4) + 0.5) / 256)
    assert torch.allclose(img[1, 4:, 0], (torch.arange(4, 8) + 0.5) / 64)


def test_contact_sheet_shapes():
    sheet = contact_sheet([torch.zeros(8, 8, 3), torch.ones(8, 8, 3), torch.ones(4, 6, 4)], columns=2, pad=1)
    assert sheet.shape == (17, 17, 4)
    assert float(sheet[0, 0, 3]) == 1.0


def test_bad_image_files(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    (tmp_path / "junk.hdr").write_bytes(b"nope")
    with pytest.raises(DataError, match="junk.hdr"):
        read_hdr(tmp_path / "junk.hdr")
    (tmp_path / "short.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + b"\x00" * 10)
    with pytest.raises(DataError, match="short.hdr"):
        read_hdr(tmp_path / "short.hdr")

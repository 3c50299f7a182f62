"""The frames `edge-agent bench` sends: a mix of real photographs of different sizes, round-robin."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg

from ..errors import EdgeAgentError
from ..inference.frames import check_jpeg

# Debian's darknet sample photos: 768x576, 773x512, 500x500, 773x512, 1352x900 (sent as 1280x852), 640x424.
MIX = ("dog", "eagle", "giraffe", "horses", "kite", "person")
QUALITY = 85  # of a re-encoded frame (see _camera_sized)
MAX_WIDTH = 1280  # wider photos are scaled down, as a camera stream of at most 1280 px would send them
MAX_BYTES = 1 << 20  # engine.max_frame_bytes' default: larger files are re-encoded to fit


class NoPhotos(EdgeAgentError):
    """No photographs to send."""

    code = "no_photos"


@dataclass(frozen=True, slots=True)
class Photo:
    """One JPEG frame to send."""

    name: str
    data: bytes
    width: int
    height: int


def default_dirs() -> list[Path]:
    """Where the default mix may be: the dev venv's copy (setup-dev.sh), or Debian's darknet package."""
    return [Path(sys.prefix) / "share" / "test-photos" / "darknet", Path("/usr/share/darknet/data")]


def load_photos(directory: str | None = None, single: str | None = None) -> list[Photo]:
    """The frames to send: one file, every JPEG of a directory, or the default mix of six photos."""
    if single:
        return [_photo(Path(single))]
    if directory:
        files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not files:
            raise NoPhotos(f"--images {directory}: no .jpg/.jpeg files there")
        return [_photo(p) for p in files]
    for folder in default_dirs():
        files = [folder / f"{name}.jpg" for name in MIX]
        if all(f.is_file() for f in files):
            return [_photo(f) for f in files]
    where = " or ".join(str(d) for d in default_dirs())
    raise NoPhotos(
        f"no default photo mix ({', '.join(MIX)}.jpg) in {where}: pass --images DIR (JPEG photos) "
        "or --image FILE.jpg, or install Debian's darknet package for its sample photos"
    )


def _photo(path: Path) -> Photo:
    try:
        data = path.read_bytes()
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except (OSError, ValueError) as exc:
        raise NoPhotos(f"{path}: not a readable JPEG ({exc})") from None
    if width > MAX_WIDTH or len(data) > MAX_BYTES:
        data, width, height = _camera_sized(data, width, height)
    check_jpeg(data, MAX_BYTES, 1 << 30)
    return Photo(path.stem, data, width, height)


def _camera_sized(data: bytes, width: int, height: int) -> tuple[bytes, int, int]:
    """Nearest-neighbour scale to at most MAX_WIDTH wide, re-encoded 4:2:0 at quality 85.

    Quality 85 gives the 1280x852 kite 174 KiB, the size issue 14 measured its mix at (70-175 KiB) and a
    camera's usual MJPEG quality; 90 gave 231 KiB.
    """
    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
    scale = min(1.0, MAX_WIDTH / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    ys = np.minimum((np.arange(new_h) / scale).astype(np.intp), height - 1)
    xs = np.minimum((np.arange(new_w) / scale).astype(np.intp), width - 1)
    small = np.ascontiguousarray(pixels[ys][:, xs])
    out = bytes(simplejpeg.encode_jpeg(small, quality=QUALITY, colorspace="RGB", colorsubsampling="420"))
    return out, new_w, new_h


def describe(photos: list[Photo]) -> str:
    """One line naming the frames and their sizes."""
    return ", ".join(f"{p.name} {p.width}x{p.height} {len(p.data) // 1024} KiB" for p in photos)

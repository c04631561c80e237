"""Safe inspection of one image referenced by a record: path containment, size, decoding, hashes.

Nothing here raises on bad input. `inspect_image` returns `ImageFacts` whose `errors` maps a rule
name to a message, in the order the checks run; a failed check stops the later ones (a missing
file is not also "not decodable"). Paths are resolved (symlinks followed) and must stay inside the
dataset directory before a single byte is read. The pixel count is checked from the header before
the pixels are decoded, so a decompression bomb costs nothing; Pillow's own bomb warning is turned
into an error as a second guard.

The perceptual fingerprint is a 16x16 RGB thumbnail (box filter, 768 bytes), compared by the
largest per-cell, per-channel difference (L-infinity; see `contamination`). Binary hashes (aHash,
dHash, 64 or 256 bits) were measured on the synthetic sources and rejected: their flat white
backgrounds make different charts collide at distance 0 while JPEG noise flips 20-40 bits of a
copy. The thumbnail distance separates them: re-encoded or resized copies (JPEG q30-95, WebP,
0.7x-3x resizes) stay under 41 of 255, different synthetic pictures are 69 or more apart.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

R_PATH = "image_path_inside"
R_EXISTS = "image_exists"
R_FILE_SIZE = "image_file_size"
R_PIXELS = "image_pixels"
R_DECODES = "image_decodes"

THUMB_SIDE = 16
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


@dataclass
class ImageFacts:
    """What one image check found. `errors` is empty when the image is usable."""

    errors: dict[str, str] = field(default_factory=dict)
    file_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None


class PathGuard:
    """Resolves image paths of one dataset and refuses any that leave it.

    Syntax first (absolute, drive letters, '~', '..', NUL), then the real path: the parent directory
    is resolved once and cached (symlinked directories included), the file itself is resolved only
    when it is a symlink, so checking 100k paths under images/ costs one lstat each.
    """

    def __init__(self, dataset_dir: Path) -> None:
        self.root = os.path.realpath(dataset_dir)
        self._dirs: dict[str, str] = {}

    def _real_dir(self, parent: str) -> str:
        if parent not in self._dirs:
            self._dirs[parent] = os.path.realpath(os.path.join(self.root, parent))
        return self._dirs[parent]

    def inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def resolve(self, relative: str) -> tuple[str | None, str | None]:
        """(real path, None) when `relative` stays inside the dataset; (None, reason) otherwise."""
        if "\x00" in relative:
            return None, f"image path {relative!r} contains a NUL byte"
        posix = PurePosixPath(relative.replace("\\", "/"))
        if posix.is_absolute() or _WINDOWS_DRIVE.match(relative) or relative.startswith("~"):
            return None, f"image path {relative!r} is absolute; it must be relative to the dataset directory"
        if ".." in posix.parts:
            return None, f"image path {relative!r} climbs out of the dataset with '..'"
        try:
            parent, name = os.path.split(relative)
            real = os.path.join(self._real_dir(parent), name)
            if os.path.islink(real):
                real = os.path.realpath(real)
        except (OSError, ValueError) as exc:
            return None, f"image path {relative!r} cannot be resolved ({type(exc).__name__}: {exc})"
        if not self.inside(real):
            return None, f"image path {relative!r} resolves to {real}, outside the dataset (a symlink out)"
        return real, None


def thumbnail(image: Image.Image, side: int = THUMB_SIDE) -> bytes:
    """The perceptual fingerprint: a side x side RGB thumbnail (box filter), row-major bytes."""
    return image.convert("RGB").resize((side, side), Image.Resampling.BOX).tobytes()


def _read_file(real: str, relative: str, max_bytes: int, facts: ImageFacts) -> bytes | None:
    try:
        info = os.stat(real)
    except FileNotFoundError:
        facts.errors[R_EXISTS] = f"image {relative!r} does not exist in the dataset"
        return None
    except OSError as exc:
        facts.errors[R_EXISTS] = f"image {relative!r} cannot be read ({exc.strerror or exc})"
        return None
    if not stat.S_ISREG(info.st_mode):
        facts.errors[R_EXISTS] = f"image {relative!r} is not a regular file"
        return None
    if info.st_size > max_bytes:
        facts.errors[R_FILE_SIZE] = (
            f"image {relative!r} is {info.st_size:,} bytes, above the {max_bytes:,} limit"
        )
        return None
    try:
        with open(real, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        facts.errors[R_EXISTS] = f"image {relative!r} cannot be read ({exc.strerror or exc})"
        return None
    facts.file_sha256 = hashlib.sha256(data).hexdigest()
    return data


def _decode(data: bytes, relative: str, max_pixels: int, fingerprint: bool, facts: ImageFacts) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    facts.errors[R_PIXELS] = (
                        f"image {relative!r} declares {width}x{height} = {width * height:,} pixels, above the"
                        f" {max_pixels:,} limit (decompression-bomb guard; not decoded)"
                    )
                    return
                image.load()
                facts.width, facts.height = width, height
                if fingerprint:
                    facts.thumbnail = thumbnail(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            facts.errors[R_PIXELS] = f"image {relative!r}: decompression bomb refused ({exc})"
        except UnidentifiedImageError:
            facts.errors[R_DECODES] = f"image {relative!r} is not an image Pillow can identify"
        except Exception as exc:  # truncated, corrupt, unsupported: any decoder failure is a data error
            facts.errors[R_DECODES] = f"image {relative!r} cannot be decoded ({type(exc).__name__}: {exc})"


def inspect_image(
    guard: PathGuard, relative: str, max_bytes: int, max_pixels: int, fingerprint: bool = False
) -> ImageFacts:
    """Check one image path of the dataset `guard` watches over; never raises.

    With `fingerprint`, also compute the thumbnail (the perceptual contamination key).
    """
    facts = ImageFacts()
    real, reason = guard.resolve(relative)
    if real is None:
        facts.errors[R_PATH] = reason or "bad image path"
        return facts
    data = _read_file(real, relative, max_bytes, facts)
    if data is not None:
        _decode(data, relative, max_pixels, fingerprint, facts)
    return facts

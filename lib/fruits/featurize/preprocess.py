"""Turn raw image bytes into the network's input: pure functions, no Spark, no framework.

Kept apart from the model and the UDF so each can be tested alone, and so every
engine sees exactly the same pixels. The study resized with Pillow's default filter
(bicubic) and scaled with Keras' ``preprocess_input`` (``x / 127.5 - 1``); we keep
both, and add the conversions real photo collections need (grayscale, CMYK, alpha,
16-bit, palette images all become 8-bit RGB).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from fruits.featurize.shapes import INPUT_SIZE

#: Images with more pixels than this are refused as likely decompression bombs.
#: 60 megapixels keeps ordinary large photos (a 50 MP camera) while refusing the
#: crafted files that expand a few kilobytes into gigabytes of pixels.
MAX_PIXELS = 60_000_000

#: Colour used under transparent pixels: Fruits-360 photos sit on white.
BACKGROUND = (255, 255, 255)


class ImageDecodeError(ValueError):
    """Raised when bytes cannot become an RGB image; the message is the recorded reason."""


def load_rgb(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode bytes into a fully loaded 8-bit RGB Pillow image.

    Parameters
    ----------
    data : bytes
        The file's content, as Spark's ``binaryFile`` source gives it.
    max_pixels : int
        Refuse images larger than this (width x height) before decoding pixels.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``; transparency is composited on white.

    Raises
    ------
    ImageDecodeError
        Empty, truncated, unknown or oversized content, with the reason as message.
    """
    if data is None:
        raise ImageDecodeError("file could not be read from storage")
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels}"
                )
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping or black backgrounds."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        # 16-bit grey: Pillow's own convert("RGB") saturates at 255; scale instead.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def resize_rgb(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize to ``size`` x ``size`` with bicubic filtering (Pillow's default, as in the study).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(size, size, 3)``.
    """
    resized = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def decode_and_resize(data: bytes, size: int = INPUT_SIZE) -> np.ndarray:
    """Bytes to a ``(size, size, 3)`` ``uint8`` array, or :class:`ImageDecodeError`."""
    return resize_rgb(load_rgb(data), size)


def scale_for_mobilenet(batch: np.ndarray) -> np.ndarray:
    """Scale ``uint8`` pixels to MobileNetV2's ``[-1, 1]`` range (Keras' ``preprocess_input``).

    Examples
    --------
    >>> scale_for_mobilenet(np.array([0, 255], dtype=np.uint8)).tolist()
    [-1.0, 1.0]
    """
    return batch.astype(np.float32) / np.float32(127.5) - np.float32(1.0)

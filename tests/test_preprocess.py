import io

import numpy as np
import pytest
from PIL import Image

from fruits.featurize.preprocess import (
    ImageDecodeError, decode_and_resize, load_rgb, scale_for_mobilenet,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_jpeg_becomes_224_rgb_uint8():
    data = encode(Image.new("RGB", (100, 100), (200, 30, 40)), "JPEG")
    pixels = decode_and_resize(data)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels[112, 112, 0]) - 200) <= 3


def test_resize_matches_the_study_pillow_default():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    data = encode(image, "PNG")
    expected = np.asarray(Image.open(io.BytesIO(data)).resize([224, 224]))  # the study's call
    np.testing.assert_array_equal(decode_and_resize(data), expected)


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.new("L", (50, 40), 128), "PNG"),
        (Image.new("CMYK", (50, 40), (0, 255, 255, 0)), "JPEG"),
        (Image.new("P", (50, 40), 3), "GIF"),
    ],
)
def test_other_modes_become_rgb(image, fmt):
    assert load_rgb(encode(image, fmt)).mode == "RGB"


def test_transparency_sits_on_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert load_rgb(encode(image, "PNG")).getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_png_is_scaled_not_clipped():
    array = np.full((10, 10), 32768, dtype=np.uint16)
    data = encode(Image.fromarray(array), "PNG")
    red, green, blue = load_rgb(data).getpixel((5, 5))
    assert red == green == blue and 126 <= red <= 129


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image", "not a recognised image format"),
    ],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        load_rgb(data)


def test_truncated_jpeg_gives_a_reason():
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_rgb(data[: len(data) // 2])


def test_oversized_image_is_refused_before_decoding():
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(ImageDecodeError, match="too large"):
        load_rgb(data, max_pixels=200 * 200)


def test_scaling_matches_keras_preprocess_input():
    pixels = np.array([0, 127.5, 255], dtype=np.float32)
    np.testing.assert_allclose(scale_for_mobilenet(np.array([0, 255], dtype=np.uint8)), [-1, 1])
    assert scale_for_mobilenet(pixels).dtype == np.float32

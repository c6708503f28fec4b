"""Fitting images for the model: small ones pass as they are, big ones are downscaled."""

from __future__ import annotations

import io
import os

from PIL import Image

from activities.image import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, fit_image, sniff_mime_type


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_formats_are_recognised_by_their_bytes_not_their_names() -> None:
    tiny = Image.new("RGB", (4, 4), (0, 128, 255))
    assert sniff_mime_type(encoded(tiny, "PNG")) == "image/png"
    assert sniff_mime_type(encoded(tiny, "JPEG")) == "image/jpeg"
    assert sniff_mime_type(encoded(tiny, "GIF")) == "image/gif"
    assert sniff_mime_type(encoded(tiny, "WEBP")) == "image/webp"
    assert sniff_mime_type(b"%PDF-1.7 not an image") is None


def test_a_small_image_goes_through_unchanged() -> None:
    data = encoded(Image.new("RGB", (64, 32), (10, 20, 30)), "PNG")
    fitted, mime, note = fit_image(data, "image/png")
    assert fitted == data and mime == "image/png" and note == "64x32 image/png"


def test_a_large_noisy_image_is_downscaled_under_the_caps() -> None:
    noise = Image.frombytes("RGB", (3000, 2000), os.urandom(3000 * 2000 * 3))
    data = encoded(noise, "PNG")
    assert len(data) > MAX_IMAGE_BYTES
    fitted, mime, note = fit_image(data, "image/png")
    assert len(fitted) <= MAX_IMAGE_BYTES and mime == "image/jpeg"
    with Image.open(io.BytesIO(fitted)) as result:
        assert max(result.size) <= MAX_IMAGE_SIDE
        assert abs(result.width / result.height - 1.5) < 0.01
    assert note.startswith("downscaled from 3000x2000")

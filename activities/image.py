"""view_image: an image from the workspace, attached to the conversation for the model to see.

Images over the size cap are downscaled (Pillow); one that cannot be brought under
it, or a file that is not a PNG, JPEG, GIF or WebP image, is a tool error.
"""

from __future__ import annotations

import base64
import io

import structlog
from PIL import Image, UnidentifiedImageError
from temporalio import activity

from activities.providers import ProviderActivities, sandbox_gone
from activities.sandbox_io import ViewImageRequest, ViewImageResult
from harness.conversation import ImageInput
from sandbox_providers.base import SandboxGone, SandboxPathError

logger = structlog.get_logger(__name__)

# an image enters the workflow's history inline: keep it well under Temporal's 2 MB payload limit
MAX_IMAGE_BYTES = 768 * 1024
MAX_IMAGE_SIDE = 2048
# never decode more than this (a decompression bomb guard)
MAX_SOURCE_PIXELS = 64_000_000

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_mime_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for signature, mime in _SIGNATURES if data.startswith(signature)), None)


def fit_image(data: bytes, mime_type: str) -> tuple[bytes, str, str]:
    """The image as it can go to the model: (bytes, mime type, a note on what was done)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if len(data) <= MAX_IMAGE_BYTES and max(width, height) <= MAX_IMAGE_SIDE:
            return data, mime_type, f"{width}x{height} {mime_type}"
        if width * height > MAX_SOURCE_PIXELS:
            raise ValueError(f"the image is {width}x{height}, too large to decode")
        image.seek(0)
        frame = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    side = MAX_IMAGE_SIDE
    while side >= 256:
        scaled = frame.copy()
        scaled.thumbnail((side, side))
        buffer = io.BytesIO()
        if scaled.mode == "RGBA":
            scaled.save(buffer, format="PNG", optimize=True)
            out_type = "image/png"
        else:
            scaled.save(buffer, format="JPEG", quality=85)
            out_type = "image/jpeg"
        if buffer.tell() <= MAX_IMAGE_BYTES:
            note = f"downscaled from {width}x{height} to {scaled.width}x{scaled.height} {out_type}"
            return buffer.getvalue(), out_type, note
        side //= 2
    raise ValueError(f"the image cannot be brought under {MAX_IMAGE_BYTES // 1024} KiB")


class ImageActivities(ProviderActivities):
    @activity.defn(name="view_image")
    async def view_image(self, request: ViewImageRequest) -> ViewImageResult:
        provider = self._provider(request.sandbox.provider)
        try:
            data = await provider.read_file(request.sandbox, request.path)
        except SandboxGone as error:
            raise sandbox_gone(error) from None
        except (SandboxPathError, FileNotFoundError, IsADirectoryError) as error:
            return ViewImageResult(error=f"cannot read {request.path}: {error}")
        mime_type = sniff_mime_type(data)
        if mime_type is None:
            return ViewImageResult(error=f"{request.path} is not a PNG, JPEG, GIF or WebP image")
        try:
            fitted, mime_type, note = fit_image(data, mime_type)
        except (ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            return ViewImageResult(error=f"cannot use {request.path}: {error}")
        logger.info("image viewed", workflow_id=activity.info().workflow_id, path=request.path, note=note)
        return ViewImageResult(
            note=note,
            image=ImageInput(mime_type=mime_type, data_base64=base64.b64encode(fitted).decode()),
        )

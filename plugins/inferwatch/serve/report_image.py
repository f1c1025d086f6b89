"""How much of a report's image is data and how much is Superset's red "Data error" boxes.

Runs in the **Superset** environment (Pillow is there, not in the pipeline's), as a script:
``.venv/superset/bin/python report_image.py < image.png`` prints JSON::

    {"width": 1600, "height": 2257, "dominant_share": 0.61, "colors": 5123,
     "ink_share": 0.08, "error_share": 0.0}

``dominant_share``: the most frequent colour's share (a blank or uniform image is near 1);
``colors``: distinct colours; ``ink_share``: pixels clearly darker than the page (text, lines,
bars); ``error_share``: pixels in the pink of an error box (antd's error alert, #fff2f0 and
its border). A PDF is read through its embedded page images (Superset's PDFs are screenshots).
Imports only the standard library and Pillow, never ``inferwatch``.
"""

from __future__ import annotations

import io
import json
import sys

from PIL import Image


def measure(image: Image.Image) -> dict:
    rgb = image.convert("RGB")
    width, height = rgb.size
    small = rgb.resize((max(1, width // 2), max(1, height // 2)))
    raw = small.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    total = len(pixels)
    colors = small.getcolors(maxcolors=total) or []
    ink = sum(1 for r, g, b in pixels if r + g + b < 3 * 160)
    # antd's error alert: background ~ (255, 242, 240), border ~ (255, 204, 199)
    error = sum(
        1 for r, g, b in pixels if r >= 250 and 195 <= g <= 246 and b <= g + 4 and r - g >= 9
    )
    return {
        "width": width,
        "height": height,
        "dominant_share": round(max(count for count, _ in colors) / total, 4),
        "colors": len(colors),
        "ink_share": round(ink / total, 4),
        "error_share": round(error / total, 4),
    }


def _pdf_images(data: bytes) -> list[bytes]:
    """The JPEG page images of a PDF written by Pillow (what Superset's PDF reports are)."""
    images, start = [], 0
    while (start := data.find(b"/DCTDecode", start)) >= 0:
        begin = data.find(b"stream", start) + len(b"stream")
        begin += 2 if data[begin : begin + 2] == b"\r\n" else 1
        end = data.find(b"endstream", begin)
        images.append(data[begin:end].rstrip(b"\r\n"))
        start = end
    return images


def main() -> int:
    data = sys.stdin.buffer.read()
    if data.startswith(b"%PDF"):
        pages = [Image.open(io.BytesIO(page)) for page in _pdf_images(data)]
        json.dump({"format": "PDF", "frames": [measure(page) for page in pages]}, sys.stdout)
        return 0
    image = Image.open(io.BytesIO(data))
    json.dump({"format": image.format, "frames": [measure(image)]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

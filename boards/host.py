"""Host side of the board link: encode images, decode reply frames, and the ``infer`` client loop.

Kept apart from the gateware (Glasgow style): this module never imports Amaranth; it reads ``top.json``.
"""

import time

import numpy as np

from . import BoardsError

__all__ = ["frame_layout", "decode_frame", "infer"]


def frame_layout(top):
    """``(score_bytes, frame_bytes)`` of a reply: class byte, scores (little-endian, signed), 4-byte cycle count."""
    sc = top["ports"]["out"]["scores"]
    score_bytes = -(-sc["bits"] // 8)
    return score_bytes, 1 + sc["count"] * score_bytes + 4


def decode_frame(frame, top):
    """``(class, scores, cycles)`` from one reply frame (bytes)."""
    score_bytes, frame_bytes = frame_layout(top)
    if len(frame) != frame_bytes:
        raise BoardsError(f"reply frame has {len(frame)} bytes, expected {frame_bytes}")
    count = top["ports"]["out"]["scores"]["count"]
    scores = [
        int.from_bytes(frame[1 + j * score_bytes : 1 + (j + 1) * score_bytes], "little", signed=True)
        for j in range(count)
    ]
    return frame[0], scores, int.from_bytes(frame[-4:], "little")


def infer(port, export_dir, top, *, n=None, timeout=5.0, progress=True):
    """Send ``n`` test images over ``port`` (a pyserial-like object: ``write``, ``read``), check every reply against
    the golden model; returns a summary dict."""
    from export import ExportError
    from export.golden import GoldenModel
    from export.manifest import load_test_set, read_manifest

    try:
        manifest = read_manifest(export_dir)
        images, _ = load_test_set(export_dir, manifest)
        golden = GoldenModel(export_dir)
    except ExportError as e:
        raise BoardsError(f"export: {e}") from None
    if top["pixels"] != images[0].size:
        raise BoardsError(
            f"the board's network takes {top['pixels']} pixels, the export's images have "
            f"{images[0].size}: it was built from another export"
        )
    n = len(images) if n is None else n
    if not 1 <= n <= len(images):
        raise BoardsError(f"--n {n} is outside 1..{len(images)} (test images in the export)")
    images = images[:n]
    trace = golden.run(images)
    _, frame_bytes = frame_layout(top)
    mismatches, correct, cycles = [], 0, []
    labels = load_test_set(export_dir, manifest)[1][:n]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="infer", unit="img")
    t0 = time.perf_counter()
    for i in range(n):
        port.write(np.ascontiguousarray(images[i].reshape(-1), dtype=np.uint8).tobytes())
        frame = b""
        deadline = time.monotonic() + timeout
        while len(frame) < frame_bytes:
            chunk = port.read(frame_bytes - len(frame))
            if chunk:
                frame += chunk
            elif time.monotonic() > deadline:
                raise BoardsError(
                    f"image {i}: no reply within {timeout} s ({len(frame)}/{frame_bytes} bytes); "
                    f"is the board programmed and the baud rate right?"
                )
        cls, scores, cyc = decode_frame(frame, top)
        cycles.append(cyc)
        if cls != int(trace.classes[i]) or scores != [int(v) for v in trace.scores[i]]:
            mismatches.append(
                {
                    "image": i,
                    "expected_class": int(trace.classes[i]),
                    "class": cls,
                    "expected_scores": [int(v) for v in trace.scores[i]],
                    "scores": scores,
                }
            )
        correct += int(cls == labels[i])
        if bar:
            bar.update()
    if bar:
        bar.close()
    wall = time.perf_counter() - t0
    return {
        "images": n,
        "mismatches": len(mismatches),
        "first_mismatch": mismatches[0] if mismatches else None,
        "accuracy": correct / n,
        "images_per_s": round(n / wall, 2),
        "wall_seconds": round(wall, 3),
        "network_cycles": {"min": min(cycles), "max": max(cycles)},
    }

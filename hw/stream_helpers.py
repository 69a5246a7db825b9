"""Testbench helpers for ``lib.stream`` interfaces under :mod:`amaranth.sim`, with optional random gaps."""

__all__ = ["stream_put", "stream_get", "stream_put_all", "stream_get_all"]


async def stream_put(ctx, stream, payload):
    """Offer one payload and wait until it is taken."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Accept one payload."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_put_all(ctx, stream, payloads, *, rng=None, gap=0.0):
    """Send every payload; with ``rng``, idle a random cycle before a beat with probability ``gap``."""
    for payload in payloads:
        while rng is not None and rng.random() < gap:
            await ctx.tick()
        await stream_put(ctx, stream, payload)


async def stream_get_all(ctx, stream, count, *, rng=None, stall=0.0):
    """Receive ``count`` payloads; with ``rng``, hold ``ready`` low for a random cycle with probability ``stall``."""
    out = []
    for _ in range(count):
        while rng is not None and rng.random() < stall:
            await ctx.tick()
        out.append(await stream_get(ctx, stream))
    return out

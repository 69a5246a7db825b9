"""Faster Verilog emission of memory initial contents (identical output).

Amaranth's RTLIL backend spells a memory's initial data as one netlist object per bit; for ``lfc`` (millions of
weight and threshold bits) that is most of ``hw gen``'s time. :func:`fast_memory_init` swaps in an emitter that
formats each row with ``format()`` instead, producing the same RTLIL text (``tests/test_hw_network.py`` converts a
design both ways and compares).
"""

import contextlib

from amaranth.back import rtlil

__all__ = ["fast_memory_init"]


def _emit_memory_fast(self, cell_idx, cell):
    memory_info = self.memories[cell_idx]
    width, depth = cell.width, cell.depth
    mask = (1 << width) - 1
    rows = list(cell.init) + [0] * (depth - len(cell.init))
    # RTLIL constants are written most significant bit first: the last row's top bit leads
    data = "".join(format(row & mask, f"0{width}b") for row in reversed(rows)) if width else ""
    self.builder.cell(
        "$meminit_v2",
        ports={
            "ADDR": self.sigspec(),
            "DATA": f"{width * depth}'{data}" if width * depth else self.sigspec(),
            "EN": self.sigspec(rtlil._nir.Value.ones(width)),
        },
        parameters={
            "MEMID": memory_info.memid,
            "ABITS": 0,
            "WIDTH": width,
            "WORDS": depth,
            "PRIORITY": 0,
        },
        src_loc=cell.src_loc,
    )


@contextlib.contextmanager
def fast_memory_init():
    """Within the block, Verilog/RTLIL conversion writes memory initial data row by row."""
    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory
    emitter.emit_memory = _emit_memory_fast
    try:
        yield
    finally:
        emitter.emit_memory = original

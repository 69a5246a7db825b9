"""Netlist targets for the adder trees: portable RTL, or Xilinx primitives for a family."""

from .adder_tree import SignFlipAdderTree, tree_depth
from .xilinx_models import simulation_models
from .xilinx_tree import CARRY_CELLS, XilinxSignFlipAdderTree, xilinx_tree_depth

__all__ = ["TARGETS", "make_tree", "tree_latency", "tree_simulation_models"]

#: ``portable`` is plain RTL any tool maps; the others instantiate ``LUT6_2`` and the family's carry cell
TARGETS = ("portable",) + tuple(CARRY_CELLS)


def make_tree(*, target, lanes, in_bits, signed=False, pipeline=0):
    """The sign-flip adder tree for ``target`` (same ports and arithmetic whichever it is)."""
    if target == "portable":
        return SignFlipAdderTree(lanes=lanes, in_bits=in_bits, signed=signed, pipeline=pipeline)
    if target in CARRY_CELLS:
        return XilinxSignFlipAdderTree(lanes=lanes, in_bits=in_bits, signed=signed, pipeline=pipeline, family=target)
    raise ValueError(f"target must be one of {TARGETS!r}, not {target!r}")


def tree_latency(*, target, lanes, pipeline):
    """Clock cycles through :func:`make_tree`'s tree without building one (the trees' own ``latency`` rule)."""
    if not pipeline:
        return 0
    # portable: ``tree_depth(lanes)`` binary levels and the root; Xilinx: the flip level, ternary levels, the root
    depth = tree_depth(lanes) + 1 if target == "portable" else xilinx_tree_depth(lanes)
    return depth // pipeline


def tree_simulation_models(trees):
    """Verilog models of every primitive the ``trees`` instantiate ("" for portable trees)."""
    prims = set()
    for tree in trees:
        prims |= getattr(tree, "primitives", set())
    return simulation_models(prims) if prims else ""

"""The whole network: matrix-vector units chained as a dataflow pipeline, pixels in, class and scores out."""

from dataclasses import dataclass

from amaranth import hdl
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .argmax import ArgmaxCollector, result_layout
from .mvu import MatrixVectorUnit

__all__ = ["LayerFolding", "NetworkTop"]


@dataclass(frozen=True)
class LayerFolding:
    pe: int
    simd: int
    hardwired: bool = False   # weights as constants (fully parallel layers only)


class NetworkTop(wiring.Component):
    """All layers of an export, each a :class:`MatrixVectorUnit`, back to back.

    Every unit's ping-pong input buffer decouples it from its producer, so in steady state an image leaves every
    ``max(ceil(in/SIMD) * ceil(out/PE))`` cycles (``fold_bound_cycles``).

    Parameters
    ----------
    layers : list of :class:`export.manifest.LayerParams`
    folding : list of :class:`LayerFolding`, one per layer (already clipped to the layer)
    tree_pipeline : int
        Adder-tree register spacing, passed to every unit.
    tree_target : str
        Adder-tree netlist, see :class:`~hw.mvu.MatrixVectorUnit`.
    tree_modules : dict, optional
        Passed to every :class:`MatrixVectorUnit`: PEs become instances of separately emitted modules.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), folding[0].simd)))``
        ``pixels_per_beat`` pixels per beat, ``beats_per_image`` beats per image (the last one zero-padded).
    o : ``Out(stream.Signature(result_layout(classes, score_bits)))``
        One beat per image.
    """

    def __init__(self, *, layers, folding, tree_pipeline=0, tree_modules=None, tree_target="portable"):
        if len(folding) != len(layers):
            raise ValueError(f"folding has {len(folding)} entries for {len(layers)} layers")
        self._layers, self.folding, self.tree_pipeline = layers, list(folding), tree_pipeline
        self._tree_modules = tree_modules
        self.tree_target = tree_target
        self.pixels_per_beat = folding[0].simd
        self.in_bits = layers[0].in_bits
        self.beats_per_image = -(-layers[0].in_features // self.pixels_per_beat)
        self.classes = layers[-1].out_features
        self.score_bits = layers[-1].score_bits
        self.layer_cycles = [-(-p.in_features // f.simd) * -(-p.out_features // f.pe)
                             for p, f in zip(layers, folding)]
        self.fold_bound_cycles = max(self.layer_cycles + [self.beats_per_image])
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(hdl.unsigned(self.in_bits), self.pixels_per_beat))),
            "o": Out(stream.Signature(result_layout(self.classes, self.score_bits))),
        })

    def units(self):
        """Fresh :class:`MatrixVectorUnit` objects for every layer (used by elaborate and for reporting)."""
        units, in_lanes = [], self.pixels_per_beat
        for p, f in zip(self._layers, self.folding):
            kw = dict(weights=p.weights, in_bits=p.in_bits, in_lanes=in_lanes, pe=f.pe, simd=f.simd,
                      acc_width=p.acc_bits, tree_pipeline=self.tree_pipeline, tree_modules=self._tree_modules,
                      tree_target=self.tree_target, hardwired=f.hardwired)
            if p.is_output:
                kw["scores"] = (p.scale, p.offset, p.score_bits)
            else:
                kw["thresholds"] = (p.orientation, p.thresholds)
            units.append(MatrixVectorUnit(**kw))
            in_lanes = f.pe
        return units

    def elaborate(self, platform):
        m = Module()
        units = self.units()
        for k, u in enumerate(units):
            m.submodules[self._layers[k].name] = u
        wiring.connect(m, wiring.flipped(self.i), units[0].i)
        for a, b in zip(units, units[1:]):
            wiring.connect(m, a.o, b.i)
        m.submodules.argmax = am = ArgmaxCollector(classes=self.classes, lanes=self.folding[-1].pe,
                                                   score_width=self.score_bits)
        wiring.connect(m, units[-1].o, am.i)
        wiring.connect(m, am.o, wiring.flipped(self.o))
        return m

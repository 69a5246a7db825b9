"""The whole network: every layer's units chained as a dataflow pipeline, pixels in, class and scores out."""

from amaranth import hdl
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .argmax import ArgmaxCollector, result_layout
from .layers import LayerFolding, UnitOptions, build_layers, geometry_only, input_format

__all__ = ["LayerFolding", "NetworkTop", "UnitOptions"]


class NetworkTop(wiring.Component):
    """All layers of an export, each built by its kind's builder (:data:`hw.layers.UNITS`), back to back.

    Every unit decouples itself from its producer (ping-pong vector buffers, line buffers, FIFOs), so in steady state
    an image leaves every ``fold_bound_cycles``: the slowest layer's cycles per image (a compute layer's
    ``vectors * ceil(columns / SIMD) * ceil(rows / PE)``, or its window's beats) or the input beats.

    Parameters
    ----------
    layers : list of :class:`export.manifest.LayerParams`
    folding : list of :class:`~hw.layers.LayerFolding`, one per layer (already clipped to the layer)
    options : :class:`~hw.layers.UnitOptions`
        How every unit is built (tree pipeline and netlist, buffers, weight memories); the defaults when ``None``.
        Also a member.
    tree_modules : dict, optional
        Passed to every :class:`~hw.mvu.MatrixVectorUnit`: PEs become instances of separately emitted modules.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), lanes_per_beat)))``
        The image, ``beats_per_image`` beats: one pixel (its C channels) per beat when the first layer is a conv or
        pool; else the image flattened (H, W, C), ``lanes_per_beat`` values per beat, the last beat zero-padded.
    o : ``Out(stream.Signature(result_layout(classes, score_bits)))``
        One beat per image.
    """

    def __init__(self, *, layers, folding, options=None, tree_modules=None):
        if len(folding) != len(layers):
            raise ValueError(f"folding has {len(folding)} entries for {len(layers)} layers")
        self._layers, self.folding, self.options = layers, list(folding), options or UnitOptions()
        self._tree_modules = tree_modules
        self.lanes_per_beat, self.group = input_format(layers, folding)
        self.in_bits = layers[0].in_bits
        c, h, w = layers[0].spec.in_shape
        self.beats_per_image = (c * h * w // self.group) * -(-self.group // self.lanes_per_beat)
        self.classes = layers[-1].rows
        self.score_bits = layers[-1].score_bits
        hw = self.layer_hardware()
        geometry_only(hw)
        self.layer_cycles = [x.cycles for x in hw]
        self.layer_info = [x.info for x in hw]
        self.fold_bound_cycles = max(self.layer_cycles + [self.beats_per_image])
        # pipeline-empty latency bound: the input, then every layer's whole image and pipeline depth
        self.latency_bound = self.beats_per_image + sum(x.cycles + x.latency + 1 for x in hw)
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(hdl.unsigned(self.in_bits), self.lanes_per_beat))),
                "o": Out(stream.Signature(result_layout(self.classes, self.score_bits))),
            }
        )

    @property
    def pixels_per_beat(self):
        return self.lanes_per_beat

    def layer_hardware(self):
        """Fresh :class:`~hw.layers.LayerHardware` for every layer (used by elaborate and for reporting)."""
        return build_layers(self._layers, self.folding, options=self.options, tree_modules=self._tree_modules)

    def units(self):
        """Every unit of every layer, in stream order."""
        return [u for x in self.layer_hardware() for u in x.units]

    def elaborate(self, platform):
        m = Module()
        upstream = wiring.flipped(self.i)
        for p, x in zip(self._layers, self.layer_hardware()):
            for k, u in enumerate(x.units):
                m.submodules[p.name if len(x.units) == 1 else f"{p.name}_{k}"] = u
                wiring.connect(m, upstream, u.i)
                upstream = u.o
        m.submodules.argmax = am = ArgmaxCollector(
            classes=self.classes, lanes=self.folding[-1].pe, score_width=self.score_bits
        )
        wiring.connect(m, upstream, am.i)
        wiring.connect(m, am.o, wiring.flipped(self.o))
        return m

"""Layer kind -> hardware: the units that implement each kind of :mod:`common.layers`, and their geometry.

Every layer becomes a short chain of streaming units (:data:`UNITS`): a dense layer a
:class:`~hw.mvu.MatrixVectorUnit`; a conv layer a :class:`~hw.sliding_window.SlidingWindow` feeding one (the
weights stored once, reused for every output pixel); a max-pool layer a :class:`~hw.maxpool.MaxPool`. Between layers a
map streams pixel by pixel, ``ceil(C / lanes)`` beats per pixel (:func:`~hw.sliding_window.map_signature`); a dense
layer's output is one "pixel" of all its outputs. Adding a kind means one builder here.
"""

from dataclasses import asdict, dataclass

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import HardwareError
from .maxpool import MaxPool
from .mvu import SEARCHES, WEIGHT_MEMORIES, MatrixVectorUnit
from .patch_window import PatchWindow
from .sliding_window import SlidingWindow
from .targets import TARGETS

__all__ = [
    "UnitOptions",
    "LayerFolding",
    "LayerHardware",
    "LayerChain",
    "UNITS",
    "build_layers",
    "input_format",
    "image_beats",
    "geometry_only",
    "conv_window",
    "window_cycles",
    "PATCH_WINDOW_BITS",
    "requant_kind",
    "PROGRESSION_MIN_LEVELS",
]

#: a conv layer whose whole patch is at most this many bits may get a :class:`~hw.patch_window.PatchWindow`
PATCH_WINDOW_BITS = 4608  # 3 x 3 x 64 values of 8 bits


@dataclass(frozen=True)
class UnitOptions:
    """How every layer's units are built: ``hw gen``'s options, recorded under the same keys in ``top.json`` (so a
    later stage rebuilds the same units with :meth:`from_description`). Checked once, here.

    Members
    -------
    tree_pipeline : int
        Adder-tree register spacing (0: none).
    tree_target : str
        Adder-tree netlist (:data:`hw.targets.TARGETS`).
    buffers : str
        MVU input-buffer storage: ``"auto"`` or ``"registers"``.
    weight_memory : str
        Weight ROM placement (:data:`hw.mvu.WEIGHT_MEMORIES`).
    search : str
        A progression requantiser's search (:data:`hw.mvu.SEARCHES`): ``"staged"``, stages of up to SF - 1 steps
        (fewest LUTs), or ``"pipeline"``, one step per stage (no load multiplexer in a step: a faster clock).
    """

    tree_pipeline: int = 0
    tree_target: str = "portable"
    buffers: str = "auto"
    weight_memory: str = "auto"
    search: str = "staged"

    def __post_init__(self):
        if not isinstance(self.tree_pipeline, int) or self.tree_pipeline < 0:
            raise HardwareError(f"tree_pipeline must be an integer >= 0, not {self.tree_pipeline!r}")
        if self.tree_target not in TARGETS:
            raise HardwareError(f"target must be one of {', '.join(TARGETS)}, not {self.tree_target!r}")
        if self.buffers not in ("auto", "registers"):
            raise HardwareError(f"buffers must be auto or registers, not {self.buffers!r}")
        if self.weight_memory not in WEIGHT_MEMORIES:
            raise HardwareError(
                f"weight_memory must be one of {', '.join(WEIGHT_MEMORIES)}, not {self.weight_memory!r}"
            )
        if self.search not in SEARCHES:
            raise HardwareError(f"search must be one of {', '.join(SEARCHES)}, not {self.search!r}")

    @classmethod
    def from_description(cls, top):
        """The options a ``top.json`` was generated with (defaults for keys an older one lacks)."""
        return cls(**{k: top[k] for k in asdict(cls()) if k in top})

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class LayerFolding:
    """PE (output rows at once) and SIMD (input columns at once) of a compute layer; pools have none."""

    pe: int = 1
    simd: int = 1
    hardwired: bool = False  # weights as constants (fully parallel layers only)


@dataclass
class LayerHardware:
    """One layer's units (in stream order), its output stream format and its cost per image.

    Members
    -------
    units : list of components, each with ``i`` and ``o`` streams, chained in order
    out_lanes, out_group, in_lanes, in_group : int
        Stream formats: values per beat, and values per group (pixel) that beats are padded to.
    cycles : int
        Cycles per image the layer needs at its slowest unit (its share of the pipeline's fold bound).
    latency : int
        Pipeline depth of its units (an empty pipeline's extra cycles).
    info : dict
        The layer's ``top.json`` entry.
    """

    units: list
    out_lanes: int
    out_group: int
    cycles: int
    latency: int
    info: dict
    in_lanes: int = 0
    in_group: int = 0


def geometry_only(hardware):
    """Mark the units of ``hardware`` (a list of :class:`LayerHardware`) as built to read their geometry only, so
    Amaranth does not warn that they were never elaborated."""
    for x in hardware:
        for u in x.units:
            u._MustUse__silence = True  # amaranth's own switch for its "created but never used" warning


def input_format(layers, folding):
    """``(lanes, group)`` of the network's input stream: a network that starts with a map layer takes one pixel
    (its C channels) per beat; one that starts with a dense layer takes its SIMD values per beat, the whole image
    as one group."""
    first = layers[0]
    if first.kind == "dense":
        return folding[0].simd, first.columns
    return first.spec.in_shape[0], first.spec.in_shape[0]


def image_beats(images, *, lanes, group):
    """``(N * beats_per_image, lanes)`` input beats for ``images`` ``(N, H, W, C)`` (or anything of N * H*W*C values
    in that order): every ``group`` values padded with zeros to whole beats of ``lanes``."""
    import numpy as np

    x = np.asarray(images).reshape(len(images), -1, group)
    per = -(-group // lanes)
    padded = np.zeros((x.shape[0], x.shape[1], per * lanes), dtype=x.dtype)
    padded[:, :, :group] = x
    return padded.reshape(-1, lanes)


def _mvu(p, f, *, in_lanes, group, ctx):
    kw = dict(
        weights=p.weights,
        in_bits=p.in_bits,
        in_lanes=in_lanes,
        group=group,
        pe=f.pe,
        simd=f.simd,
        acc_width=p.acc_bits,
        tree_modules=ctx["tree_modules"],
        **ctx["options"].to_dict(),
        hardwired=f.hardwired,
    )
    if p.is_output:
        kw["scores"] = (p.scale, p.offset, p.score_bits)
    elif requant_kind(p) == "progression":
        frac_bits, a_fx, d_fx = p.progression
        kw["progression"] = (p.orientation, a_fx, d_fx, frac_bits, p.thresholds.shape[1], (p.acc_min, p.acc_max))
    else:
        kw["thresholds"] = (p.orientation, p.thresholds)
    return MatrixVectorUnit(**kw)


#: a progression layer with at most this many levels gets the threshold table's unit (its expansion: the same
#: levels), where a few thresholds cost less than the progression's wide subtractors
PROGRESSION_MIN_LEVELS = 4


def requant_kind(p):
    """The hidden layer requantiser the export's representation gets: ``"progression"``
    (:class:`~hw.requant.ProgressionRequantizer`) for a progression export of more than
    :data:`PROGRESSION_MIN_LEVELS` levels, else ``"thresholds"`` (:class:`~hw.requant.ThresholdRequantizer` over the
    table, or the progression's expansion -- identical levels either way); ``None`` for the output layer."""
    if p.is_output:
        return None
    if p.progression is not None and p.thresholds.shape[1] > PROGRESSION_MIN_LEVELS:
        return "progression"
    return "thresholds"


def _compute_info(p, f, mvu, vectors):
    # in_features/out_features: the matrix a PE row folds over (a conv layer's columns are its K*K*C patch)
    return {
        "in_features": p.columns,
        "out_features": p.rows,
        "pe": f.pe,
        "simd": f.simd,
        "sf": mvu.sf,
        "nf": mvu.nf,
        "vectors": vectors,
        "in_bits": p.in_bits,
        "out_bits": mvu.out_shape.width,
        "acc_bits": p.acc_bits,
        "unit_latency": mvu.latency,
        "hardwired": f.hardwired,
        "requant": requant_kind(p) or "scores",
        # a progression's restoring search: steps per stage, one subtractor per lane each (fewer where SF allows)
        "search_steps": list(mvu.search.steps) if mvu.search is not None else None,
    }


def _dense(p, f, *, in_lanes, in_group, ctx):
    # a map arrives pixel by pixel (groups of C); a vector from a dense layer or the input is one group
    mvu = _mvu(p, f, in_lanes=in_lanes, group=in_group, ctx=ctx)
    cycles = max(mvu.cycles, mvu.in_beats)
    return LayerHardware([mvu], f.pe, p.rows, cycles, mvu.latency, _compute_info(p, f, mvu, 1))


def conv_window(spec, in_bits, pe, simd):
    """The window a conv layer gets: a :class:`~hw.patch_window.PatchWindow` (a whole patch per beat, walking the
    padded map) when the line buffer's ``kernel**2`` beats per output pixel would hold back the MVU's
    ``ceil(columns/SIMD) * ceil(rows/PE)`` steps, the padded map is walked faster than that, and the patch fits
    :data:`PATCH_WINDOW_BITS` of registers (few channels: first layers); else a
    :class:`~hw.sliding_window.SlidingWindow` (one pixel per beat, line buffer in memory)."""
    steps = -(-spec.columns // simd) * -(-spec.rows // pe)
    small = spec.columns * in_bits <= PATCH_WINDOW_BITS
    faster = window_cycles(spec, PatchWindow) < window_cycles(spec, SlidingWindow)
    return PatchWindow if small and faster and steps < spec.kernel**2 else SlidingWindow


def window_cycles(spec, window):
    """Cycles per image of a conv layer's window (images back to back): the padded map for a patch window,
    ``kernel**2`` beats per output pixel for a line buffer."""
    _, h, w = spec.in_shape
    if window is PatchWindow:
        return (h + 2 * spec.padding) * (w + 2 * spec.padding)
    return spec.vectors * spec.kernel**2


def _conv(p, f, *, in_lanes, in_group, ctx):
    s = p.spec
    c, h, w = s.in_shape
    cls = conv_window(s, p.in_bits, f.pe, f.simd)
    window = cls(
        channels=c,
        height=h,
        width=w,
        kernel=s.kernel,
        stride=s.stride,
        padding=s.padding,
        bits=p.in_bits,
        in_lanes=in_lanes,
    )
    # the window's beats are the MVU's groups: one pixel's C channels (line buffer), or the whole patch
    group = s.columns if cls is PatchWindow else c
    mvu = _mvu(p, f, in_lanes=group, group=group, ctx=ctx)
    vectors = s.vectors
    cycles = max(vectors * mvu.cycles, window.in_beats_per_image, window_cycles(s, cls))
    info = {
        **_compute_info(p, f, mvu, vectors),
        "window": cls.__name__,
        "window_in_beats": window.in_beats_per_image,
        "window_out_beats": window.out_beats_per_image,
    }
    return LayerHardware([window, mvu], f.pe, s.out_channels, cycles, window.latency + mvu.latency, info)


def _maxpool(p, f, *, in_lanes, in_group, ctx):
    s = p.spec
    c, h, w = s.in_shape
    pool = MaxPool(channels=c, height=h, width=w, kernel=s.kernel, bits=p.in_bits, lanes=in_lanes)
    info = {"lanes": in_lanes, "in_bits": p.in_bits, "out_bits": p.in_bits, "unit_latency": pool.latency}
    return LayerHardware([pool], in_lanes, c, pool.in_beats_per_image, pool.latency, info)


#: layer kind -> ``f(params, folding, *, in_lanes, in_group, ctx) -> LayerHardware``
UNITS = {"dense": _dense, "conv2d": _conv, "maxpool2d": _maxpool}


def build_layers(layers, folding, *, options=None, tree_modules=None):
    """:class:`LayerHardware` for every layer, each fed by the one before it (the first by :func:`input_format`);
    ``options`` (:class:`UnitOptions`) and ``tree_modules`` go to every MVU."""
    ctx = {"options": options or UnitOptions(), "tree_modules": tree_modules}
    lanes, group = input_format(layers, folding)
    out = []
    for p, f in zip(layers, folding):
        hw = UNITS[p.kind](p, f, in_lanes=lanes, in_group=group, ctx=ctx)
        hw.in_lanes, hw.in_group = lanes, group
        hw.info = {
            "name": p.name,
            "kind": p.kind,
            "in_shape": list(p.spec.in_shape),
            "out_shape": list(p.spec.out_shape),
            "cycles": hw.cycles,
            **hw.info,
        }
        out.append(hw)
        lanes, group = hw.out_lanes, hw.out_group
    return out


class LayerChain(wiring.Component):
    """One layer's units alone between two streams: what a layer-level bench simulates.

    Parameters
    ----------
    hardware : :class:`LayerHardware`

    Members
    -------
    i : the first unit's input stream
    o : the last unit's output stream
    """

    def __init__(self, hardware):
        self._units = hardware.units
        super().__init__(
            {
                "i": In(stream.Signature(self._units[0].i.payload.shape())),
                "o": Out(stream.Signature(self._units[-1].o.payload.shape())),
            }
        )

    def elaborate(self, platform):
        m = Module()
        upstream = wiring.flipped(self.i)
        for k, u in enumerate(self._units):
            m.submodules[f"unit{k}"] = u
            wiring.connect(m, upstream, u.i)
            upstream = u.o
        wiring.connect(m, upstream, wiring.flipped(self.o))
        return m

"""The typed layer description every stage shares: kinds, shapes and the image geometry derived from them.

A network is a list of layers, each one of the kinds in :data:`KINDS`, with its input and output shapes written
``(C, H, W)``. Values of a feature map are always *ordered* ``H, W, C`` — raster order, channels innermost — in files,
in the golden model and in the hardware streams; a dense layer's input vector is its input map flattened in that order.

Compute layers (``conv2d``, ``dense``) are matrix-vector products: ``rows`` output channels, ``columns`` inputs per
output value, repeated for ``vectors`` output pixels per image. A conv layer's column ``(ky * K + kx) * C + c`` is input
channel ``c`` at kernel position ``(ky, kx)`` (the order the sliding window emits a patch). This module is the one
place these rules are written; the stages register what they do per kind (training modules, exporter and golden
functions, hardware units) against :attr:`Layer.kind`.
"""

from dataclasses import dataclass

from . import LutmacError

__all__ = [
    "LayerError",
    "Layer",
    "Conv2d",
    "MaxPool2d",
    "Dense",
    "KINDS",
    "NAME_PREFIX",
    "layer_names",
    "layer_from_dict",
    "check_chain",
    "check_names",
    "fold_cycles",
    "compute_layers",
]


class LayerError(LutmacError):
    """A layer whose shape or parameters do not work."""


def _int(v):
    """A real integer: not a bool, not a float (``8.0``), not a string."""
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(v):
    return _int(v) and v >= 1


def _shape(v, what):
    if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_positive_int(d) for d in v)):
        raise LayerError(f"{what} must be three positive integers (C, H, W), not {v!r}")
    return tuple(v)


def fold_cycles(vectors, rows, columns, pe, simd):
    """Cycles a compute layer needs per image on ``pe`` rows x ``simd`` columns: every output vector is
    ``ceil(columns / simd) * ceil(rows / pe)`` steps."""
    return vectors * -(-columns // simd) * -(-rows // pe)


@dataclass(frozen=True)
class Layer:
    """Base of the layer kinds: ``name`` and ``in_shape`` ``(C, H, W)``; ``out_shape`` follows from the kind."""

    name: str
    in_shape: tuple

    kind = None
    compute = False  # a matrix-vector product with binary weights (has rows/columns/vectors)
    params = ()  # the kind's own parameters, as manifest keys

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise LayerError(f"layer name {self.name!r} is not an identifier")
        object.__setattr__(self, "in_shape", _shape(self.in_shape, f"layer {self.name!r} in_shape"))
        for p in self.params:
            v = getattr(self, p)
            if p == "padding":
                if not (_int(v) and v >= 0):
                    raise LayerError(f"layer {self.name!r}: padding must be an integer >= 0, not {v!r}")
            elif not _positive_int(v):
                raise LayerError(f"layer {self.name!r}: {p} must be a positive integer, not {v!r}")
        self._check()

    def _check(self):
        pass

    @property
    def out_shape(self):
        raise NotImplementedError

    def to_dict(self):
        return {
            "name": self.name,
            "kind": self.kind,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            **{p: getattr(self, p) for p in self.params},
        }

    @property
    def in_values(self):
        c, h, w = self.in_shape
        return c * h * w


@dataclass(frozen=True)
class Conv2d(Layer):
    """``out_channels`` filters of ``kernel`` x ``kernel`` x C, ``stride``, ``padding`` zeros on every side.

    Bounds: ``0 <= padding < kernel``, the kernel fits the padded map (``kernel <= H + 2 * padding`` and the same for
    W), and ``1 <= stride <= max(H, W) + 2 * padding`` (the padded map's larger side: any larger stride gives the
    same output as that one, and only overflows index arithmetic)."""

    out_channels: int = 1
    kernel: int = 1
    stride: int = 1
    padding: int = 0

    kind = "conv2d"
    compute = True
    params = ("out_channels", "kernel", "stride", "padding")

    def _check(self):
        c, h, w = self.in_shape
        if self.padding >= self.kernel:
            raise LayerError(
                f"layer {self.name!r}: padding {self.padding} must be smaller than the kernel {self.kernel}"
            )
        if self.kernel > h + 2 * self.padding or self.kernel > w + 2 * self.padding:
            raise LayerError(
                f"layer {self.name!r}: a {self.kernel}x{self.kernel} kernel does not fit a {h}x{w} map"
                f"{f' padded by {self.padding}' if self.padding else ''}"
            )
        if self.stride > max(h, w) + 2 * self.padding:
            raise LayerError(
                f"layer {self.name!r}: stride {self.stride} is larger than the {h}x{w} map"
                f"{f' padded by {self.padding}' if self.padding else ''} (at most "
                f"{max(h, w) + 2 * self.padding})"
            )

    @property
    def out_shape(self):
        _, h, w = self.in_shape
        k, s, p = self.kernel, self.stride, self.padding
        return (self.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)

    rows = property(lambda self: self.out_channels)
    columns = property(lambda self: self.kernel * self.kernel * self.in_shape[0])
    vectors = property(lambda self: self.out_shape[1] * self.out_shape[2])


@dataclass(frozen=True)
class MaxPool2d(Layer):
    """Maximum over ``kernel`` x ``kernel`` windows at stride ``kernel`` (no padding; a remainder is dropped)."""

    kernel: int = 2
    stride: int = 2

    kind = "maxpool2d"
    params = ("kernel", "stride")

    def _check(self):
        _, h, w = self.in_shape
        if self.stride != self.kernel:
            raise LayerError(f"layer {self.name!r}: max-pool stride {self.stride} must equal its kernel {self.kernel}")
        if self.kernel > h or self.kernel > w:
            raise LayerError(f"layer {self.name!r}: a {self.kernel}x{self.kernel} pool leaves nothing of a {h}x{w} map")

    @property
    def out_shape(self):
        c, h, w = self.in_shape
        return (c, h // self.kernel, w // self.kernel)


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected: ``out_features`` outputs of the whole input map (flattened ``H, W, C``)."""

    out_features: int = 1

    kind = "dense"
    compute = True
    params = ("out_features",)

    @property
    def out_shape(self):
        return (self.out_features, 1, 1)

    rows = property(lambda self: self.out_features)
    columns = property(lambda self: self.in_values)
    vectors = property(lambda self: 1)


KINDS = {cls.kind: cls for cls in (Conv2d, MaxPool2d, Dense)}

#: how layers are named: the kind's prefix and its position among the layers of that prefix (conv0, pool0, fc0, ...)
NAME_PREFIX = {"conv2d": "conv", "maxpool2d": "pool", "dense": "fc"}


def layer_names(kinds):
    """The names of layers of ``kinds`` in order: ``conv0, conv1, ...``, ``pool0, ...``, ``fc0, ...``, each counted
    per prefix (``16c3-mp2-32c3-10`` is conv0, pool0, conv1, fc0)."""
    counts, names = {}, []
    for kind in kinds:
        prefix = NAME_PREFIX[kind]
        names.append(f"{prefix}{counts.get(prefix, 0)}")
        counts[prefix] = counts.get(prefix, 0) + 1
    return names


def check_names(layers):
    """Check that ``layers`` are named by kind and position (:func:`layer_names`): two equal-shaped layers swapped,
    or a layer dropped, then no longer pass as another valid network."""
    for i, (layer, want) in enumerate(zip(layers, layer_names(layer.kind for layer in layers))):
        if layer.name != want:
            raise LayerError(
                f"layer {i} {layer.name!r}: name must be {want!r} (layers are named by kind and "
                f"position: conv0, conv1, ..., pool0, ..., fc0, ...)"
            )


def layer_from_dict(d, where="layer"):
    """The :class:`Layer` of a manifest entry (``kind``, ``name``, ``in_shape`` and the kind's parameters);
    ``out_shape``, when given, must be what the kind computes. :class:`LayerError` names ``where`` and the key."""
    if not isinstance(d, dict):
        raise LayerError(f"{where} must be an object, not {type(d).__name__}")
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise LayerError(f"{where}: kind {kind!r} is unknown; kinds are {', '.join(KINDS)}")
    cls = KINDS[kind]
    for key in ("name", "in_shape", *cls.params):
        if key not in d:
            raise LayerError(f"{where}: {kind} layer is missing key {key!r}")
    try:
        layer = cls(name=d["name"], in_shape=d["in_shape"], **{p: d[p] for p in cls.params})
    except LayerError as e:
        raise LayerError(f"{where}: {e}") from None
    out = d.get("out_shape", list(layer.out_shape))
    if not (isinstance(out, list) and all(_int(v) for v in out) and out == list(layer.out_shape)):
        raise LayerError(
            f"{where}: out_shape {d['out_shape']!r} is not what a {kind} of in_shape "
            f"{list(layer.in_shape)} gives ({list(layer.out_shape)})"
        )
    return layer


def check_chain(layers, input_shape, classes):
    """Check that ``layers`` connect: the first takes ``input_shape``, each takes its predecessor's output, names are
    unique, the last is a dense layer with ``classes`` outputs, and no conv or pool follows a dense layer."""
    if not layers:
        raise LayerError("a network needs at least one layer")
    shape, seen, after_dense = tuple(input_shape), set(), None
    for layer in layers:
        if layer.name in seen:
            raise LayerError(f"layer name {layer.name!r} is used twice")
        seen.add(layer.name)
        if layer.in_shape != shape:
            raise LayerError(f"layer {layer.name!r} takes {list(layer.in_shape)}, its input is {list(shape)}")
        if after_dense is not None and layer.kind != "dense":
            raise LayerError(f"layer {layer.name!r}: a {layer.kind} cannot follow the dense layer {after_dense!r}")
        if layer.kind == "dense":
            after_dense = layer.name
        shape = layer.out_shape
    last = layers[-1]
    if last.kind != "dense" or last.out_features != classes:
        raise LayerError(
            f"the last layer must be dense with the {classes} classes as outputs, not {last.name!r} "
            f"with output {list(last.out_shape)}"
        )


def compute_layers(layers):
    return [layer for layer in layers if layer.compute]

"""Architecture strings and presets -> the typed layer list (:mod:`common.layers`).

Grammar: tokens joined by ``-``. ``<C>c<K>`` is a conv layer of C output channels and a K x K kernel, with optional
suffixes ``s<S>`` (stride) and ``p<P>`` (zero padding): ``32c3p1``, ``64c5s2``. ``mp<K>`` is a K x K max-pool at
stride K. ``<N>`` is a dense layer of N outputs. The last token is the number of classes; the input shape comes from
the data set. An all-dense string may also start with the input size (``784-256-256-10``), as MLPs always have.
"""

import re

from common.layers import Conv2d, Dense, LayerError, MaxPool2d, check_chain

from . import TrainError

__all__ = ["ARCH_PRESETS", "parse_arch", "describe"]

# FINN's MLPs (tfc/sfc/lfc; lfc is the paper's MNIST net), FINN/Brevitas CNV, the paper's CIFAR-10 and SVHN nets,
# and small conv nets for the offline data sets. The classes token is appended from the data set.
ARCH_PRESETS = {
    "tfc": "64-64-64",
    "sfc": "256-256-256",
    "lfc": "1024-1024-1024",
    "cnv": "64c3-64c3-mp2-128c3-128c3-mp2-256c3-256c3-512-512",
    "bc-cifar10": "128c3p1-128c3p1-mp2-256c3p1-256c3p1-mp2-512c3p1-512c3p1-mp2-1024-1024",
    "bc-svhn": "64c3p1-64c3p1-mp2-128c3p1-128c3p1-mp2-256c3p1-256c3p1-mp2-1024-1024",
    "tcnv": "16c3p1-mp2-32c3p1-mp2-64",
    "fcnv": "32c3-32c3-mp2-64c3-64c3-mp2-256",
}

_CONV = re.compile(r"([1-9][0-9]*)c([1-9][0-9]*)(?:s([1-9][0-9]*))?(?:p([0-9]+))?")
_POOL = re.compile(r"mp([1-9][0-9]*)")
_DENSE = re.compile(r"[1-9][0-9]*")


def parse_arch(arch, input_shape, classes):
    """The layers (:class:`common.layers.Layer`) of ``arch`` for inputs of ``input_shape`` ``(C, H, W)`` and
    ``classes`` outputs; :class:`TrainError` naming the token that does not work."""
    if not isinstance(arch, str) or not arch:
        raise TrainError(
            f"arch {arch!r} must be a preset ({', '.join(ARCH_PRESETS)}) or a string like 16c3-mp2-32c3-10"
        )
    if arch in ARCH_PRESETS:
        tokens = ARCH_PRESETS[arch].split("-") + [str(classes)]
    else:
        tokens = arch.split("-")
        in_values = input_shape[0] * input_shape[1] * input_shape[2]
        # an all-dense string is an MLP's sizes (784-256-10): its first token is the input, not a layer
        if all(_DENSE.fullmatch(t) for t in tokens):
            if len(tokens) < 2 or int(tokens[0]) != in_values:
                raise TrainError(
                    f"arch {arch!r}: an MLP string must start with the data set's {in_values} inputs "
                    f"and end with its {classes} classes (like {in_values}-256-{classes})"
                )
            tokens = tokens[1:]
        if not _DENSE.fullmatch(tokens[-1]) or int(tokens[-1]) != classes:
            raise TrainError(f"arch {arch!r}: the last token {tokens[-1]!r} must be the data set's {classes} classes")
    layers, shape, counts = [], tuple(input_shape), {"conv": 0, "pool": 0, "fc": 0}

    def name(prefix):
        counts[prefix] += 1
        return f"{prefix}{counts[prefix] - 1}"

    for token in tokens:
        if layers and layers[-1].kind == "dense" and not _DENSE.fullmatch(token):
            raise TrainError(f"arch {arch!r}: token {token!r}: only dense layers can follow a dense layer")
        try:
            if m := _CONV.fullmatch(token):
                c, k, s, p = (int(v) if v is not None else None for v in m.groups())
                layer = Conv2d(
                    name=name("conv"), in_shape=shape, out_channels=c, kernel=k, stride=s or 1, padding=p or 0
                )
            elif m := _POOL.fullmatch(token):
                k = int(m.group(1))
                layer = MaxPool2d(name=name("pool"), in_shape=shape, kernel=k, stride=k)
            elif _DENSE.fullmatch(token):
                layer = Dense(name=name("fc"), in_shape=shape, out_features=int(token))
            else:
                raise TrainError(f"arch {arch!r}: token {token!r} is not <C>c<K>[s<S>][p<P>], mp<K> or a number")
        except LayerError as e:
            raise TrainError(f"arch {arch!r}: token {token!r}: {_reason(e)}") from None
        layers.append(layer)
        shape = layer.out_shape
    try:
        check_chain(layers, input_shape, classes)
    except LayerError as e:
        raise TrainError(f"arch {arch!r}: {e}") from None
    return layers


def _reason(e):
    # "layer 'conv1': a 5x5 kernel does not fit ..." -> the part after the layer name
    text = str(e)
    return text.split(": ", 1)[1] if text.startswith("layer ") and ": " in text else text


def describe(layers):
    """One line per layer: ``conv0 conv2d 1x28x28 -> 32x26x26``."""
    fmt = "x".join
    return [
        f"{layer.name} {layer.kind} {fmt(map(str, layer.in_shape))} -> {fmt(map(str, layer.out_shape))}"
        for layer in layers
    ]

"""Export (stage 2 of lutmac): packed ±1 weight files, integer folding of batch norm and activations, and the
integer golden model every RTL result is checked against.

The readers (:mod:`export.packing`, :mod:`export.manifest`, :mod:`export.golden`) need numpy only; only
:mod:`export.exporter` imports torch, to read the training checkpoint.
"""

from common import LutmacError

__all__ = ["ExportError", "WeightFormatError"]


class ExportError(LutmacError):
    """Bad input to or output of the export stage. ``str()`` names the file and the reason."""


class WeightFormatError(ExportError):
    """A packed weight or threshold file that is truncated, of the wrong magic/version, or not what the manifest
    says."""

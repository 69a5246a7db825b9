"""ECP5 PLL (``EHXPLLL``) for one output clock: divider search like prjtrellis' ``ecppll``, and the instance.

The PLL feeds ``CLKOP`` back to itself (``FEEDBK_PATH = "CLKOP"``), so ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and the
VCO runs at ``f_out * CLKOP_DIV``. The search tries every divider set within the sysCLOCK PLL's ranges and keeps
the one closest to the requested frequency; among equally close ones, the VCO nearest 600 MHz (as ``ecppll``
does), then the first found (smallest ``CLKI_DIV``, then ``CLKFB_DIV``). Arithmetic is exact (fractions), so the
result does not depend on float rounding.
"""

from dataclasses import dataclass
from fractions import Fraction

from amaranth.hdl import Const, Instance

__all__ = ["PLLConfig", "ecp5_pll_config", "ecp5_pll_instance", "INPUT_MHZ", "OUTPUT_MHZ", "PFD_MHZ", "VCO_MHZ"]

#: the ECP5 sysCLOCK PLL's ranges in MHz (inclusive): CLKI input, CLKOP output, phase detector, VCO
INPUT_MHZ = (Fraction(8), Fraction(400))
OUTPUT_MHZ = (Fraction(25, 8), Fraction(400))
PFD_MHZ = (Fraction(25, 8), Fraction(400))
VCO_MHZ = (Fraction(400), Fraction(800))

_CLKI_DIV, _CLKFB_DIV, _CLKOP_DIV = 128, 80, 128  # divider maxima, as ecppll searches them
_VCO_PREFERRED = Fraction(600)


@dataclass(frozen=True)
class PLLConfig:
    """One ``EHXPLLL`` configuration (frequencies in Hz)."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    input_hz: float
    requested_hz: float
    output_hz: float  # what the dividers make
    vco_hz: float

    def parameters(self):
        """The instance parameters (names as in the ECP5 primitive library)."""
        return {
            "PLLRST_ENA": "DISABLED",
            "INTFB_WAKE": "DISABLED",
            "STDBY_ENABLE": "DISABLED",
            "DPHASE_SOURCE": "DISABLED",
            "OUTDIVIDER_MUXA": "DIVA",
            "OUTDIVIDER_MUXB": "DIVB",
            "OUTDIVIDER_MUXC": "DIVC",
            "OUTDIVIDER_MUXD": "DIVD",
            "CLKI_DIV": self.clki_div,
            "CLKOP_ENABLE": "ENABLED",
            "CLKOP_DIV": self.clkop_div,
            # zero phase in Lattice's (and LiteX's) convention; with CLKOP as its own feedback the phase only
            # matters against other outputs, and this PLL has none
            "CLKOP_CPHASE": self.clkop_div - 1,
            "CLKOP_FPHASE": 0,
            "FEEDBK_PATH": "CLKOP",
            "CLKFB_DIV": self.clkfb_div,
        }

    def summary(self):
        """A JSON-ready description: requested and achieved MHz, VCO MHz, the dividers."""
        return {
            "requested_mhz": round(self.requested_hz / 1e6, 6),
            "achieved_mhz": round(self.output_hz / 1e6, 6),
            "vco_mhz": round(self.vco_hz / 1e6, 6),
            "pll": {"CLKI_DIV": self.clki_div, "CLKFB_DIV": self.clkfb_div, "CLKOP_DIV": self.clkop_div},
        }


def _mhz(f):
    return f"{float(f):g} MHz"


def ecp5_pll_config(input_hz, output_hz, *, tolerance=0.01):
    """The ``EHXPLLL`` dividers that make ``output_hz`` from ``input_hz``.

    Parameters
    ----------
    input_hz : float
        Frequency on ``CLKI`` (the board oscillator), 8–400 MHz.
    output_hz : float
        Requested ``CLKOP`` frequency, 3.125–400 MHz.
    tolerance : float
        Largest accepted relative difference between the requested and the achieved frequency.

    Returns
    -------
    :class:`PLLConfig`
        Its ``output_hz`` is the achieved frequency.

    Raises
    ------
    ValueError
        When a frequency is outside the PLL's ranges, or no divider set comes within ``tolerance``.
    """
    for name, value in (("input_hz", input_hz), ("output_hz", output_hz), ("tolerance", tolerance)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    f_in = Fraction(input_hz) / 1_000_000
    target = Fraction(output_hz) / 1_000_000
    if not INPUT_MHZ[0] <= f_in <= INPUT_MHZ[1]:
        raise ValueError(f"the ECP5 PLL takes {_mhz(INPUT_MHZ[0])} to {_mhz(INPUT_MHZ[1])} in, not {_mhz(f_in)}")
    if not OUTPUT_MHZ[0] <= target <= OUTPUT_MHZ[1]:
        raise ValueError(
            f"{_mhz(target)} is outside the ECP5 PLL's output range, {_mhz(OUTPUT_MHZ[0])} to {_mhz(OUTPUT_MHZ[1])}"
        )
    best, best_key = None, None
    for clki_div in range(1, _CLKI_DIV + 1):
        pfd = f_in / clki_div
        if not PFD_MHZ[0] <= pfd <= PFD_MHZ[1]:
            continue
        for clkfb_div in range(1, _CLKFB_DIV + 1):
            f_out = pfd * clkfb_div
            if not OUTPUT_MHZ[0] <= f_out <= OUTPUT_MHZ[1]:
                continue
            # the output dividers that put the VCO in range: ceil(min / f_out) .. floor(max / f_out)
            for clkop_div in range(max(1, -(-VCO_MHZ[0] // f_out)), min(_CLKOP_DIV, VCO_MHZ[1] // f_out) + 1):
                vco = f_out * clkop_div
                key = (abs(f_out - target), abs(vco - _VCO_PREFERRED))
                if best_key is None or key < best_key:
                    best, best_key = (clki_div, clkfb_div, clkop_div, f_out, vco), key
    if best is None or best_key[0] > tolerance * target:
        nearest = f" (the nearest is {_mhz(best[3])}, {float(100 * best_key[0] / target):.2f}% off)" if best else ""
        raise ValueError(
            f"an ECP5 PLL cannot make {_mhz(target)} from {_mhz(f_in)} within {100 * tolerance:g}%{nearest}"
        )
    clki_div, clkfb_div, clkop_div, f_out, vco = best
    return PLLConfig(
        clki_div=clki_div,
        clkfb_div=clkfb_div,
        clkop_div=clkop_div,
        input_hz=float(input_hz),
        requested_hz=float(output_hz),
        output_hz=float(f_out * 1_000_000),
        vco_hz=float(vco * 1_000_000),
    )


def ecp5_pll_instance(config, *, clki, clkop, lock):
    """The ``EHXPLLL`` instance of ``config``: ``clki`` in, ``clkop`` out (and fed back), ``lock`` high once locked.

    The ``FREQUENCY_PIN_*`` attributes tell nextpnr-ecp5 the clocks; it also derives ``CLKOP``'s constraint from
    the dividers and ``CLKI``'s constraint.
    """
    return Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{config.input_hz / 1e6:g}",
        a_FREQUENCY_PIN_CLKOP=f"{config.output_hz / 1e6:g}",
        # the loop filter settings ecppll and Lattice's tools write for this mode
        a_ICP_CURRENT="12",
        a_LPF_RESISTOR="8",
        a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        **{f"p_{k}": v for k, v in config.parameters().items()},
        i_CLKI=clki,
        i_CLKFB=clkop,
        i_RST=Const(0),
        i_STDBY=Const(0),
        i_PHASESEL0=Const(0),
        i_PHASESEL1=Const(0),
        i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1),
        i_PHASELOADREG=Const(1),
        i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0),
        o_CLKOP=clkop,
        o_LOCK=lock,
    )

"""ECP5 EHXPLLL parameters: the same search as Project Trellis' ``ecppll`` (pure Python).

fout = fin * CLKFB_DIV / CLKI_DIV with the feedback taken from CLKOP, and
fvco = fout * CLKOP_DIV.  Limits (ECP5 data sheet, as in ecppll): PFD
(fin / CLKI_DIV) 3.125 .. 400 MHz, VCO 400 .. 800 MHz, output 10 .. 400 MHz.
Among the settings with the smallest output error the VCO closest to 600 MHz
wins.  We refuse a frequency that cannot be made to within
:data:`MAX_FREQ_ERROR` (e.g. 48 MHz from 25 MHz: the nearest is 46.875 MHz).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PFD_MIN, PFD_MAX = 3_125_000, 400_000_000
VCO_MIN, VCO_MAX = 400_000_000, 800_000_000
OUT_MIN, OUT_MAX = 10_000_000, 400_000_000
MAX_FREQ_ERROR = 0.001       # relative


@dataclass(frozen=True)
class PllParams:
    fin: int
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def fout(self) -> Fraction:
        return Fraction(self.fin * self.clkfb_div, self.clki_div)

    @property
    def fvco(self) -> Fraction:
        return self.fout * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        # ecppll shifts CLKOP by 180 degrees ("Lattice seems to do this"); the phase of a
        # CLKOP-fed-back clock does not matter to the logic.
        return self.clkop_div // 2

    def instance_params(self) -> dict:
        """Parameters and attributes of the EHXPLLL Instance (without ports)."""
        return {
            "a_FREQUENCY_PIN_CLKI": f"{self.fin / 1e6:g}",
            "a_FREQUENCY_PIN_CLKOP": f"{float(self.fout) / 1e6:g}",
            "a_ICP_CURRENT": "12", "a_LPF_RESISTOR": "8",
            "a_MFG_ENABLE_FILTEROPAMP": "1", "a_MFG_GMCREF_SEL": "2",
            "p_PLLRST_ENA": "DISABLED", "p_INTFB_WAKE": "DISABLED", "p_STDBY_ENABLE": "DISABLED",
            "p_DPHASE_SOURCE": "DISABLED",
            "p_OUTDIVIDER_MUXA": "DIVA", "p_OUTDIVIDER_MUXB": "DIVB",
            "p_OUTDIVIDER_MUXC": "DIVC", "p_OUTDIVIDER_MUXD": "DIVD",
            "p_CLKI_DIV": self.clki_div,
            "p_CLKOP_ENABLE": "ENABLED", "p_CLKOP_DIV": self.clkop_div,
            "p_CLKOP_CPHASE": self.clkop_cphase, "p_CLKOP_FPHASE": 0,
            "p_FEEDBK_PATH": "CLKOP", "p_CLKFB_DIV": self.clkfb_div,
        }


def pll_params(fin_hz: int, fout_hz: float) -> PllParams:
    """Best EHXPLLL setting for ``fout_hz`` from ``fin_hz``; ValueError if none is within 0.1 %."""
    fin = int(fin_hz)
    target = Fraction(fout_hz).limit_denominator(1000)
    if not OUT_MIN <= target <= OUT_MAX:
        raise ValueError(f"PLL output {float(target) / 1e6:g} MHz unsupported: the ECP5 PLL makes "
                         f"{OUT_MIN / 1e6:g} .. {OUT_MAX / 1e6:g} MHz")
    best, best_key = None, None
    for clki_div in range(1, 129):
        pfd = Fraction(fin, clki_div)
        if not PFD_MIN <= pfd <= PFD_MAX:
            continue
        for clkfb_div in range(1, 81):
            fout = pfd * clkfb_div
            if fout > OUT_MAX:
                break
            for clkop_div in range(1, 129):
                fvco = fout * clkop_div
                if fvco < VCO_MIN:
                    continue
                if fvco > VCO_MAX:
                    break
                key = (abs(fout - target), abs(fvco - 600_000_000))
                if best_key is None or key < best_key:
                    best, best_key = PllParams(fin, clki_div, clkfb_div, clkop_div), key
    if best is None or best_key[0] / target > MAX_FREQ_ERROR:
        near = f" (nearest: {float(best.fout) / 1e6:.6g} MHz)" if best is not None else ""
        raise ValueError(f"PLL cannot make {float(target) / 1e6:g} MHz from {fin / 1e6:g} MHz within "
                         f"{100 * MAX_FREQ_ERROR:g} %{near}; pick another --freq, e.g. 25 * N / M MHz "
                         f"with M <= 8 such as 40, 45, 50, 60 or 75")
    return best

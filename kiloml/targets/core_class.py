"""Core classes: the key of a target profile's calibration (its core and its FPU / DSP
extension), and the calibrated class that stands in for a core without an emulator."""

from __future__ import annotations

from kiloml.targets.profiles import TargetProfile

# cores measured on no emulator borrow the closest calibrated class (the note says so)
CLOSEST_CLASS = {
    "cortex-m33-fpu-dsp": "cortex-m4-fpu-dsp",
    "cortex-m33-dsp": "cortex-m4-fpu-dsp",
    "cortex-m55-fpu-dsp": "cortex-m7-fpu-dsp",
    "cortex-m4-dsp": "cortex-m3",
    "cortex-m0": "cortex-m0plus",
    "cortex-m23": "cortex-m0plus",
}


def core_class(profile: TargetProfile) -> str:
    """The key of a profile's calibration: the core and its FPU / DSP extension."""
    return profile.core + ("-fpu" if profile.has_fpu else "") + \
        ("-dsp" if profile.has_dsp_ext else "")

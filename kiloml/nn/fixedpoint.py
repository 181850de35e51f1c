"""TFLite / gemmlowp fixed-point arithmetic, vectorized, bit-exact.

Every function takes and returns int64 numpy arrays holding int32 values, and
reproduces the C expression it is named after, including C's truncating
division, arithmetic right shifts and int32 wrap-around. These are the
building blocks of the int8 reference kernels; the C runtime implements the
same expressions, so Python, C and TFLM agree to the bit.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def as_i64(x: np.ndarray | int) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (what the C code does on overflow)."""
    x = as_i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def trunc_div(x: np.ndarray, d: int) -> np.ndarray:
    """C integer division (rounds toward zero) by a positive constant."""
    x = as_i64(x)
    q = np.abs(x) // d
    return np.where(x < 0, -q, q)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    a = as_i64(a)
    if isinstance(b, (int, np.integer)) and b != INT32_MIN:
        # a scalar multiplier (the usual case): no overflow is possible, fewer array passes
        ab = a * int(b)
        high = np.abs(ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))) >> 31
        return np.where(ab < 0, -high, high)  # C's division truncates toward zero
    b = as_i64(b)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = trunc_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    x = as_i64(x)
    if isinstance(exponent, (int, np.integer)):
        if exponent == 0:
            return x
        mask = (1 << int(exponent)) - 1
        return (x >> int(exponent)) + ((x & mask) > (mask >> 1) + (x < 0))
    exponent = as_i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent."""
    x = as_i64(x)
    threshold = (1 << (31 - exponent)) - 1
    out = wrap32(x << exponent)
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def rescale(x: np.ndarray, src_integer_bits: int, dst_integer_bits: int) -> np.ndarray:
    exponent = src_integer_bits - dst_integer_bits
    if exponent > 0:
        return saturating_shift_left(x, exponent)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return as_i64(x)


def multiply_by_quantized_multiplier(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding, the TFLM default)."""
    if isinstance(shift, (int, np.integer)) and isinstance(multiplier, (int, np.integer)):
        left, right = max(int(shift), 0), max(-int(shift), 0)
        shifted = wrap32(as_i64(x) * (1 << left))
        return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted,
                                                                            int(multiplier)),
                                      right)
    shift = as_i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap32(as_i64(x) * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_greater_than_one(
    x: np.ndarray, multiplier: int, left_shift: int
) -> np.ndarray:
    return saturating_rounding_doubling_high_mul(wrap32(as_i64(x) * (1 << left_shift)), multiplier)


def tflite_round(v: float) -> int:
    """std::round: half away from zero (floor(|v| + 0.5) would round 0.49999999999999994 up)."""
    a = abs(v)
    r = math.floor(a)
    if a - r >= 0.5:  # exact: a and its floor are close
        r += 1
    return int(math.copysign(r, v))


def round_f32(q: np.ndarray) -> np.ndarray:
    """roundf for float32 arrays: half away from zero, exactly."""
    q = np.asarray(q, np.float32)
    a = np.abs(q)
    r = np.floor(a)
    r = r + ((a - r) >= np.float32(0.5))
    return np.copysign(r, q).astype(np.float32)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: a double -> (Q31 significand, power-of-two shift)."""
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return q_fixed, shift


def quantize_multiplier_greater_than_one(real_multiplier: float) -> tuple[int, int]:
    if not real_multiplier > 1.0:
        raise ValueError(f"multiplier {real_multiplier} must be > 1")
    q, shift = quantize_multiplier(real_multiplier)
    return q, shift


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    max_input_rescaled = (
        1.0 * ((1 << input_integer_bits) - 1)
        * (1 << (total_signed_bits - input_integer_bits))
        / (1 << input_left_shift)
    )
    return math.floor(max_input_rescaled)


def count_leading_zeros_u32(x: np.ndarray) -> np.ndarray:
    x = as_i64(x) & 0xFFFFFFFF
    bits = np.zeros(x.shape, dtype=np.int64)
    nonzero = x > 0
    bits[nonzero] = np.floor(np.log2(x[nonzero].astype(np.float64))).astype(np.int64) + 1
    # log2 of values just below a power of two can round up in float64: fix exactly.
    too_big = nonzero & ((np.int64(1) << np.maximum(bits - 1, 0)) > x)
    bits[too_big] -= 1
    return 32 - bits


# ---- gemmlowp transcendental functions on FixedPoint<int32, IntegerBits> ----

def _add(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    return wrap32(as_i64(a) + b)


def rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    s = as_i64(a) + as_i64(b)
    sign = np.where(s >= 0, 1, -1)
    return trunc_div(s + sign, 2)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    srdhm = saturating_rounding_doubling_high_mul
    constant_term = 1895147668
    constant_1_over_3 = 715827883
    x = _add(a, 1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_add(srdhm(_add(x4_over_4, x3), constant_1_over_3), x2), 1)
    return _add(constant_term, srdhm(constant_term, _add(x, poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 in FixedPoint<int32, integer_bits>; result in Q0.31."""
    a = as_i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = _add(a & mask, -one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = _add(a_mod_quarter_minus_one_quarter, -a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            shift = fractional_bits + exponent
            hit = (remainder & (1 << shift)) != 0
            scaled = saturating_rounding_doubling_high_mul(result, multiplier)
            result = np.where(hit, scaled, result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_half(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shared Newton-Raphson core: x ~= 1 / half_denominator in Q2.29."""
    srdhm = saturating_rounding_doubling_high_mul
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = _add(1515870810, srdhm(half_denominator, -1010580540))
    one_f2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = _add(one_f2, -half_denominator_times_x)
        x = _add(x, rescale(srdhm(x, one_minus), 4, 2))
    return x, half_denominator


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    x, _ = _newton_reciprocal_half(a)
    return rescale(x, 1, 0)  # ExactMulByPot<-1> turns Q2 into Q1 with the same raw value


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    x, _ = _newton_reciprocal_half(a)
    return rescale(_add(x, -(1 << 29)), 2, 0)


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    a = as_i64(a)
    positive = a > 0
    abs_input = np.where(positive, a, wrap32(-a))
    result_if_positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap32(-abs_input), integer_bits))
    result_if_negative = _add(INT32_MAX, -result_if_positive)
    out = np.where(positive, result_if_positive, result_if_negative)
    return np.where(a == 0, 1 << 30, out)


def tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    a = as_i64(a)
    negative = a < 0
    n = np.where(negative, a, wrap32(-a))
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    out = np.where(negative, wrap32(-t), t)
    return np.where(a == 0, 0, out)


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 reciprocal, num_bits_over_unit)."""
    x = as_i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit

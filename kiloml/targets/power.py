"""Power from measured instruction counts and a profile's current figures.

A duty-cycled sensor node: every ``1 / sample_rate`` s the core wakes to push a
sample (kml_push_sample: preprocessing and the ring buffer), every
``1 / inference_rate`` s it classifies a window, and sleeps the rest of the time. Run
current scales with the clock (I = k * f), so the energy of N cycles is k * V * N
whatever the clock; sleep power is the profile's sleep current times the supply
voltage. Wake-up latency and peripherals (ADC, radio) are not modelled: this is the
processor's share.
"""

from __future__ import annotations

from kiloml.targets.profiles import TargetProfile

HOURS_PER_DAY = 24.0


def power_report(profile: TargetProfile, instructions_per_inference: float,
                 push_instructions_per_sample: float, sample_rate_hz: float,
                 inference_rate_hz: float, battery_mah: float, budget_uw: float) -> dict:
    e_inf = profile.energy_uj(instructions_per_inference)  # uJ
    t_inf = profile.latency_us(instructions_per_inference) / 1e6  # s
    e_push = profile.energy_uj(push_instructions_per_sample)
    t_push = profile.latency_us(push_instructions_per_sample) / 1e6
    sleep_uw = profile.sleep_power_uw

    def average_uw(rate_hz: float) -> float:
        busy = rate_hz * t_inf + sample_rate_hz * t_push  # fraction of time awake
        active_uw = rate_hz * e_inf + sample_rate_hz * e_push  # uJ/s = uW
        return active_uw + sleep_uw * max(0.0, 1.0 - busy)

    avg = average_uw(inference_rate_hz)
    # the highest inference rate whose average power fits the budget (the sample pushes
    # are paid whatever the rate; P is linear in the rate while the core is not saturated)
    fixed = average_uw(0.0)
    slope = e_inf - sleep_uw * t_inf
    max_by_time = (1.0 - sample_rate_hz * t_push) / t_inf if t_inf else float("inf")
    if fixed > budget_uw:
        max_rate = 0.0
    elif slope <= 0:
        max_rate = max_by_time
    else:
        max_rate = min((budget_uw - fixed) / slope, max_by_time)
    battery_uwh = battery_mah * 1e3 * profile.supply_voltage_v  # mAh -> uAh x V
    life_h = battery_uwh / avg if avg > 0 else float("inf")
    return {
        "energy_per_inference_uj": round(e_inf, 4),
        "active_time_per_inference_us": round(t_inf * 1e6, 3),
        "energy_per_sample_push_uj": round(e_push, 5),
        "sample_rate_hz": sample_rate_hz,
        "inference_rate_hz": inference_rate_hz,
        "duty_cycle": inference_rate_hz * t_inf + sample_rate_hz * t_push,
        "sleep_power_uw": round(sleep_uw, 3),
        "average_power_uw": round(avg, 3),
        "battery_mah": battery_mah,
        "battery_life_days": round(life_h / HOURS_PER_DAY, 2),
        "power_budget_uw": budget_uw,
        "max_inference_rate_hz_within_budget": round(max_rate, 4),
        "within_power_budget": avg <= budget_uw,
        "assumptions": profile.power_source,
    }

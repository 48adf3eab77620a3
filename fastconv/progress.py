"""Honest progress figures for training: compilation apart, steady throughput, a sober ETA.

The first training step of a process compiles Numba's kernels and can take seconds where the
next ones take milliseconds. :class:`StepClock` therefore keeps that first step on its own
(``first_step_time``) and counts only the later, "steady" steps in the images/s figures, and
gives an ETA only once a few steady steps have been timed.
"""
import math

__all__ = ["StepClock", "plural", "format_duration", "ETA_MIN_STEADY_STEPS"]

# an ETA from fewer steady steps than this swings by large factors on a shared machine
ETA_MIN_STEADY_STEPS = 5


def plural(count, word, words=None):
    """``"1 epoch"``, ``"2 epochs"``; ``words`` for an irregular plural."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def format_duration(seconds):
    """``"0.42 s"``, ``"12.3 s"``, ``"4:05"``, ``"1:02:03"``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StepClock:
    """Times the steps of one training run in this process.

    ``step(seconds)`` records a step's training time (the first one as the compile step);
    ``evaluation(seconds)`` the time of an accuracy evaluation, which the ETA also counts.
    """

    def __init__(self):
        self.first_step_time = None
        self.steady_steps = 0
        self.steady_time = 0.0
        self.last_evaluation_time = None

    def step(self, seconds):
        """Record one step; returns True when it counts as steady."""
        if self.first_step_time is None:
            self.first_step_time = seconds
            return False
        self.steady_steps += 1
        self.steady_time += seconds
        return True

    def evaluation(self, seconds):
        self.last_evaluation_time = seconds

    def images_per_sec(self, batch_size):
        """Steady throughput; None before any steady step."""
        if self.steady_steps == 0 or self.steady_time <= 0:
            return None
        return self.steady_steps * batch_size / self.steady_time

    def eta(self, steps_left, evaluations_left):
        """Seconds left, or None until ``ETA_MIN_STEADY_STEPS`` steady steps were timed."""
        if self.steady_steps < ETA_MIN_STEADY_STEPS:
            return None
        seconds = steps_left * self.steady_time / self.steady_steps
        if self.last_evaluation_time is not None:
            seconds += evaluations_left * self.last_evaluation_time
        return seconds if math.isfinite(seconds) else None

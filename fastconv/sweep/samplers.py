"""Search spaces and samplers: which hyperparameters and which seed each trial gets.

Trial ``i`` of a sweep with base seed ``s`` draws from ``SeedSequence(s, spawn_key=(i, ...))``,
so its hyperparameters and its seed depend on ``s`` and ``i`` alone: not on which worker runs
it, nor on the order in which the other trials finish.

* ``RandomSampler``: each dimension drawn independently (``LogUniform`` is the book's
  ``10 ** uniform(a, b)``).
* ``GridSampler``: the points of a grid in a fixed order, trial ``i`` the ``i``-th point.
* ``OptunaSampler``: any Optuna sampler (``"tpe"``: ``TPESampler``) driven through ask/tell on
  the driver. Optuna's own random and grid samplers are not used for the first two: they draw
  from one sequential generator, so trial ``i`` would depend on the trials asked before it.
"""
import itertools
import math
import numbers

import numpy as np

__all__ = ["LogUniform", "Uniform", "Choice", "RandomSampler", "GridSampler", "OptunaSampler",
           "make_sampler", "trial_seed", "SAMPLERS"]

SAMPLERS = ("random", "grid", "tpe")
# keys of a result record that are not hyperparameters (nor metrics): "hyperparameters" lists
# the space's names, so that a record can tell a hyperparameter from a metric
RESERVED = ("trial", "seed", "hyperparameters", "error")

_SEED_STREAM, _PARAM_STREAM = 0, 1  # the two child streams of one trial's seed sequence


def _finite_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def check_count(name, value, minimum=1):
    """``value`` as an int >= ``minimum`` (a NumPy integer will do), or a clear error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return int(value)


class Uniform:
    """A float drawn uniformly from [low, high)."""

    def __init__(self, low, high):
        self.low = _finite_number("low", low)
        self.high = _finite_number("high", high)
        if not self.low < self.high:
            raise ValueError(f"low must be below high; got low={low!r}, high={high!r}")
        if not math.isfinite(self.high - self.low):  # NumPy's uniform draw would overflow
            raise ValueError(f"high - low must be a finite number; got low={low!r}, "
                             f"high={high!r}")

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def grid(self, points):
        return [float(v) for v in np.linspace(self.low, self.high, points)]

    def optuna_distribution(self, optuna):
        return optuna.distributions.FloatDistribution(self.low, self.high)

    def __repr__(self):
        return f"Uniform({self.low!r}, {self.high!r})"


class LogUniform(Uniform):
    """A float whose base-10 logarithm is uniform: ``10 ** uniform(log10(low), log10(high))``,
    the book's draw for the learning rate and the weight decay."""

    def __init__(self, low, high):
        super().__init__(low, high)
        if self.low <= 0:
            raise ValueError(f"low must be positive for a log-uniform range; got {low!r}")
        self.exponents = (math.log10(self.low), math.log10(self.high))

    def sample(self, rng):
        return float(10 ** rng.uniform(*self.exponents))

    def grid(self, points):
        return [float(10 ** v) for v in np.linspace(*self.exponents, points)]

    def optuna_distribution(self, optuna):
        return optuna.distributions.FloatDistribution(self.low, self.high, log=True)

    def __repr__(self):
        return f"LogUniform({self.low!r}, {self.high!r})"


class Choice:
    """One of a list of values (numbers, strings, booleans or None: they go into JSON)."""

    def __init__(self, values):
        if isinstance(values, (str, bytes)):  # else each character would be a value
            raise TypeError(f"Choice takes a list of values; got the string {values!r}")
        values = [v.item() if isinstance(v, (np.integer, np.floating, np.bool_)) else v
                  for v in values]
        if not values:
            raise ValueError("Choice needs at least one value")
        for value in values:
            if not (value is None or isinstance(value, (bool, int, float, str))):
                raise TypeError(f"Choice values must be numbers, strings, booleans or None; "
                                f"got {value!r}")
            if value != value:  # a resumed sweep could never match its own records
                raise ValueError(f"Choice values must not be NaN; got {values!r}")
        self.values = values

    def sample(self, rng):
        return self.values[int(rng.integers(len(self.values)))]

    def grid(self, points):
        return list(self.values)

    def optuna_distribution(self, optuna):
        return optuna.distributions.CategoricalDistribution(self.values)

    def __repr__(self):
        return f"Choice({self.values!r})"


def check_space(space):
    """``space`` as a dict of name -> Uniform/LogUniform/Choice, or a clear error."""
    if not isinstance(space, dict):
        raise TypeError(f"space must be a dict of name -> LogUniform/Uniform/Choice; "
                        f"got {type(space).__name__}")
    if not space:
        raise ValueError("space is empty: give at least one hyperparameter, e.g. "
                         "{'lr': LogUniform(1e-6, 1e-2)}")
    for name, dimension in space.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"space keys must be non-empty strings; got {name!r}")
        if name in RESERVED:
            raise ValueError(f"space key {name!r} is reserved for the result records "
                             f"(reserved: {RESERVED})")
        if not isinstance(dimension, (Uniform, Choice)):
            raise TypeError(f"space[{name!r}] must be LogUniform, Uniform or Choice; "
                            f"got {dimension!r}")
    return dict(space)


def check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def _trial_stream(base_seed, trial, stream):
    return np.random.SeedSequence(base_seed, spawn_key=(trial, stream))


def trial_seed(base_seed, trial):
    """The seed handed to trial ``trial``'s training function (fits ``np.random.seed``)."""
    return int(_trial_stream(base_seed, trial, _SEED_STREAM).generate_state(1)[0])


class RandomSampler:
    """Each hyperparameter drawn independently, in the order of the space's keys."""

    name = "random"
    sequential = False

    def __init__(self, space, base_seed):
        self.space = check_space(space)
        self.base_seed = check_seed(base_seed)

    def can_ask(self, trial, finished):
        return True

    def params(self, trial, finished=None):
        rng = np.random.default_rng(_trial_stream(self.base_seed, trial, _PARAM_STREAM))
        return {name: dim.sample(rng) for name, dim in self.space.items()}


class GridSampler:
    """The grid's points in order, the last key varying fastest.

    A ``Choice`` contributes its values; a ``Uniform``/``LogUniform`` contributes ``points``
    evenly spaced values (log-spaced for LogUniform), ends included. ``points=None`` picks the
    fewest per continuous dimension that give at least ``n_trials`` points, so that 100 trials
    over two ranges are a 10 x 10 grid. A grid larger than ``n_trials`` is cut after
    ``n_trials`` points (the first values of the first keys only).
    """

    name = "grid"
    sequential = False

    def __init__(self, space, n_trials, points=None):
        self.space = check_space(space)
        n_trials = check_count("n_trials", n_trials)
        continuous = sum(not isinstance(d, Choice) for d in self.space.values())
        fixed = math.prod(len(d.values) for d in self.space.values() if isinstance(d, Choice))
        if points is None:
            points = 1
            while continuous and fixed * points ** continuous < n_trials:
                points += 1
        else:
            points = check_count("points", points)
        self.axes = [dim.grid(points) for dim in self.space.values()]
        self.size = math.prod(len(axis) for axis in self.axes)
        if n_trials > self.size:
            raise ValueError(f"n_trials={n_trials} is more than the grid's {self.size} points; "
                             f"raise points= or give a larger space")

    def can_ask(self, trial, finished):
        return True

    def params(self, trial, finished=None):
        if not 0 <= trial < self.size:  # else it would wrap round to the grid's start
            raise IndexError(f"trial {trial} is beyond the grid's {self.size} points")
        values = []
        for axis in reversed(self.axes):
            trial, index = divmod(trial, len(axis))
            values.append(axis[index])
        return dict(zip(self.space, reversed(values)))

    def points(self):
        return [dict(zip(self.space, point)) for point in itertools.product(*self.axes)]


class OptunaSampler:
    """An Optuna sampler run through ask/tell on the driver.

    Trial ``i`` is asked only after trials ``0 .. i - in_flight`` have been told, and they are
    told in trial order just before it: Optuna then sees the same history for trial ``i``
    whatever the number of workers and the completion order, so a seeded Optuna sampler gives
    the same hyperparameters in every run with the same ``in_flight``. At most ``in_flight``
    trials run at once; more workers than that idle. A restarted sweep replays the ask/tell
    history from the results file and checks that it reproduces the recorded hyperparameters.
    """

    sequential = True

    def __init__(self, space, base_seed, metric, goal, sampler="tpe", in_flight=4):
        try:
            import optuna
        except ImportError:
            raise ImportError("sampler='tpe' needs Optuna: pip install 'fastconv[distributed]'"
                              ) from None
        self.space = check_space(space)
        if not isinstance(metric, str):
            raise ValueError("an Optuna sampler needs metric= (the name of the result to "
                             "optimize, e.g. 'val_acc')")
        in_flight = check_count("in_flight", in_flight)
        if goal not in ("max", "min"):
            raise ValueError(f"goal must be 'max' or 'min'; got {goal!r}")
        self.base_seed = check_seed(base_seed)
        if sampler == "tpe":
            seed = int(np.random.SeedSequence(self.base_seed).generate_state(1)[0])
            sampler = optuna.samplers.TPESampler(seed=seed)
        elif not isinstance(sampler, optuna.samplers.BaseSampler):
            raise TypeError(f"sampler must be 'tpe' or an optuna sampler; got {sampler!r}")
        self.name = type(sampler).__name__
        self.metric, self.goal, self.in_flight = metric, goal, in_flight
        self._optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.create_study(
            sampler=sampler, direction="maximize" if goal == "max" else "minimize")
        self._distributions = {name: dim.optuna_distribution(optuna)
                               for name, dim in self.space.items()}
        self._asked = {}  # trial -> params
        self._told = 0    # trials 0 .. _told - 1 have been told

    def can_ask(self, trial, finished):
        return all(j in finished for j in range(self._told, trial - self.in_flight + 1))

    def params(self, trial, finished):
        if trial in self._asked:
            return self._asked[trial]
        if trial != len(self._asked):
            raise RuntimeError(f"trials must be asked in order: trial {trial} before "
                               f"{len(self._asked)}")
        while self._told <= trial - self.in_flight:
            self._tell(self._told, finished[self._told])
            self._told += 1
        asked = self._study.ask(self._distributions)
        params = {name: _plain_value(asked.params[name]) for name in self.space}
        self._asked[trial] = params
        return params

    def _tell(self, trial, record):
        value = record.get(self.metric)
        if "error" in record or not isinstance(value, (int, float)) or not math.isfinite(value):
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, float(value))


def _plain_value(value):
    return value.item() if isinstance(value, np.generic) else value


def make_sampler(sampler, space, n_trials, base_seed, metric, goal):
    """The sampler object for a name in SAMPLERS or an Optuna sampler instance."""
    if isinstance(sampler, str):
        if sampler == "random":
            return RandomSampler(space, base_seed)
        if sampler == "grid":
            return GridSampler(space, n_trials)
        if sampler == "tpe":
            return OptunaSampler(space, base_seed, metric, goal)
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}, a "
                         f"RandomSampler/GridSampler/OptunaSampler or an optuna sampler")
    if isinstance(sampler, (RandomSampler, GridSampler, OptunaSampler)):
        _check_instance(sampler, space, n_trials, base_seed, metric, goal)
        return sampler
    module = type(sampler).__module__ or ""
    if module.startswith("optuna."):
        return OptunaSampler(space, base_seed, metric, goal, sampler=sampler)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}, a "
                     f"RandomSampler/GridSampler/OptunaSampler or an optuna sampler")


def _check_instance(sampler, space, n_trials, base_seed, metric, goal):
    """Refuse a sampler object made for another sweep than the one run_sweep is given."""
    kind = type(sampler).__name__
    if isinstance(sampler, OptunaSampler) and sampler._asked:
        # its study holds that call's asks: replaying a results file into it would not match
        raise ValueError(f"this {kind} has served a run_sweep call already; make a new one "
                         f"with the same arguments to resume the sweep")
    if isinstance(sampler, GridSampler) and n_trials > sampler.size:
        raise ValueError(f"n_trials={n_trials} is more than the {kind}'s {sampler.size} points")
    settings = [("space", check_space(space), sampler.space)]
    if not isinstance(sampler, GridSampler):
        settings.append(("seed", base_seed, sampler.base_seed))
    if isinstance(sampler, OptunaSampler):
        settings.append(("goal", goal, sampler.goal))
        if metric is not None:
            settings.append(("metric", metric, sampler.metric))
    for name, given, own in settings:
        if repr(given) != repr(own):  # (the dimensions of a space have no ==)
            raise ValueError(f"run_sweep was given {name} {given!r} but the {kind} was made "
                             f"with {name} {own!r}; give both the same")

"""fastconv.optimizer against the book's optimizer formulas, written out here in plain NumPy."""
import copy
import importlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fastconv
from fastconv import optimizer as fopt

# ``fastconv.backend`` is the context manager the package re-exports; this is the module.
backend_module = importlib.import_module("fastconv.backend")

BACKENDS = ("numba", "numpy")
NAMES = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")
STATE = {"SGD": (), "Momentum": ("v",), "Nesterov": ("v",), "AdaGrad": ("h",),
         "RMSprop": ("h",), "Adam": ("m", "v")}


# --- the oracle: the book's update rules as NumPy expressions on dicts of arrays ------------

def _zeros_for(params):
    return {key: np.zeros_like(val) for key, val in params.items()}


class OracleSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


class OracleMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = _zeros_for(params)
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class OracleNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = _zeros_for(params)
        for key in params:  # upstream's order since "Fix Nesterov update function" (2021)
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class OracleAdaGrad:
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = _zeros_for(params)
        for key in params:
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class OracleRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = _zeros_for(params)
        for key in params:
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class OracleAdam:
    # ``scalar`` is applied to the scalars that meet the arrays. The default (float) is the
    # book; np.float32 gives the pure-float32 formula, with lr_t still computed from the
    # Python floats first (1 - beta2**t in float32 would cancel away most of its digits).
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, scalar=float):
        self.lr, self.beta1, self.beta2, self.scalar = lr, beta1, beta2, scalar
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = _zeros_for(params), _zeros_for(params)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        s = self.scalar
        for key in params:
            self.m[key] += (1 - s(self.beta1)) * (grads[key] - self.m[key])
            self.v[key] += (1 - s(self.beta2)) * (grads[key]**2 - self.v[key])
            params[key] -= s(lr_t) * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


ORACLES = {"SGD": OracleSGD, "Momentum": OracleMomentum, "Nesterov": OracleNesterov,
           "AdaGrad": OracleAdaGrad, "RMSprop": OracleRMSprop, "Adam": OracleAdam}

# Non-default hyperparameters, so a swapped or dropped argument cannot pass unnoticed.
HYPER = {"SGD": dict(lr=0.05), "Momentum": dict(lr=0.03, momentum=0.8),
         "Nesterov": dict(lr=0.03, momentum=0.85), "AdaGrad": dict(lr=0.07),
         "RMSprop": dict(lr=0.02, decay_rate=0.95),
         "Adam": dict(lr=0.01, beta1=0.8, beta2=0.99)}


# --- helpers -------------------------------------------------------------------------------

def make_params(rng, dtype=np.float64, shapes=None):
    shapes = shapes or {"W1": (30, 20), "b1": (20,), "W2": (20, 7), "b2": (7,)}
    return {key: rng.standard_normal(shape).astype(dtype) for key, shape in shapes.items()}


def make_grads(rng, params, steps):
    return [{key: rng.standard_normal(val.shape).astype(val.dtype)
             for key, val in params.items()} for _ in range(steps)]


def run(opt, params, grad_seq):
    for grads in grad_seq:
        opt.update(params, grads)
    return params


def assert_dicts_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def run_both(name, dtype, backend, steps=5, seed=0, shapes=None, hyper=None, typed=True):
    """(fastconv optimizer, its params, oracle, its params) after ``steps`` updates.

    With ``typed`` the oracle gets its hyperparameters as scalars of ``dtype``, so NumPy
    evaluates the whole formula in that dtype; otherwise it gets the Python floats, as the
    book's optimizers do (for float64 the two are the same).
    """
    rng = np.random.default_rng(seed)
    params = make_params(rng, dtype, shapes)
    grad_seq = make_grads(rng, params, steps)
    hyper = HYPER[name] if hyper is None else hyper
    expected = copy.deepcopy(params)
    if not typed:
        oracle = ORACLES[name](**hyper)
    elif name == "Adam":
        oracle = OracleAdam(**hyper, scalar=dtype)
    else:
        oracle = ORACLES[name](**{key: dtype(value) for key, value in hyper.items()})
    run(oracle, expected, grad_seq)
    opt = getattr(fopt, name)(**hyper)
    with fastconv.using_backend(backend):
        run(opt, params, grad_seq)
    return opt, params, oracle, expected


# --- exactness -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_float64_matches_book_bit_for_bit(name, backend):
    opt, params, oracle, expected = run_both(name, np.float64, backend)
    assert_dicts_equal(params, expected)
    for attr in STATE[name]:
        assert_dicts_equal(getattr(opt, attr), getattr(oracle, attr))
    if name == "Adam":
        assert opt.iter == oracle.iter == 5


@pytest.mark.parametrize("name", NAMES)
def test_default_hyperparameters_match_book(name):
    opt, params, _, expected = run_both(name, np.float64, "numba", hyper={})
    assert_dicts_equal(params, expected)
    book_defaults = {"SGD": dict(lr=0.01), "Momentum": dict(lr=0.01, momentum=0.9),
                     "Nesterov": dict(lr=0.01, momentum=0.9), "AdaGrad": dict(lr=0.01),
                     "RMSprop": dict(lr=0.01, decay_rate=0.99),
                     "Adam": dict(lr=0.001, beta1=0.9, beta2=0.999, iter=5)}[name]
    for attr, value in book_defaults.items():
        assert getattr(opt, attr) == value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32_and_matches_numpy(name, backend):
    opt, params, oracle, expected = run_both(name, np.float32, backend)
    for key, val in params.items():
        assert val.dtype == np.float32, key
        np.testing.assert_allclose(val, expected[key], rtol=1e-6, atol=1e-9, err_msg=key)
    for attr in STATE[name]:
        for key, val in getattr(opt, attr).items():
            assert val.dtype == np.float32, (attr, key)
            np.testing.assert_allclose(val, getattr(oracle, attr)[key], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_float32_is_close_to_the_books_mixed_precision(name):
    # The book's float32 run is not pure float32: NumPy evaluates scalar sub-expressions such
    # as 1 - decay_rate or momentum * momentum on the Python floats (float64) and Adam's
    # np.float64 lr_t even promotes the final step to float64. fastconv casts the
    # hyperparameters to float32 first, so the steps differ by a few float32 ulps of the step
    # (a relative 1e-6 of 1 - 0.95 for RMSprop), not of the parameter.
    rng = np.random.default_rng(0)
    start = make_params(rng, np.float32)
    _, params, _, expected = run_both(name, np.float32, "numba", typed=False)
    for key, val in params.items():
        moved, book_moved = val - start[key], expected[key] - start[key]
        np.testing.assert_allclose(moved, book_moved, rtol=1e-5,
                                   atol=1e-5 * np.abs(book_moved).max(), err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_backends_agree_exactly(name, dtype):
    _, by_numba, _, _ = run_both(name, dtype, "numba", seed=3)
    _, by_numpy, _, _ = run_both(name, dtype, "numpy", seed=3)
    assert_dicts_equal(by_numba, by_numpy)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_thread_count_does_not_change_results(name, dtype):
    shapes = {"W": (400, 250), "b": (250,)}  # 100k elements: prange really splits the work
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            _, params, _, _ = run_both(name, dtype, "numba", steps=3, seed=5, shapes=shapes)
            results.append(params)
    finally:
        numba.set_num_threads(before)
    assert_dicts_equal(*results)


def test_backend_switch_takes_effect_between_updates():
    rng = np.random.default_rng(11)
    params = make_params(rng)
    grad_seq = make_grads(rng, params, 4)
    expected = copy.deepcopy(params)
    run(OracleAdam(), expected, grad_seq)
    opt = fopt.Adam()
    for step, grads in enumerate(grad_seq):
        with fastconv.using_backend(BACKENDS[step % 2]):
            opt.update(params, grads)
    assert_dicts_equal(params, expected)


def test_kernels_are_looked_up_at_update_time(monkeypatch):
    calls = []
    real = backend_module.kernels

    def spy(name=None):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(backend_module, "kernels", spy)
    rng = np.random.default_rng(0)
    params = make_params(rng)
    fopt.SGD().update(params, make_grads(rng, params, 1)[0])
    assert calls


# --- in place, layouts and dtypes ----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_updates_in_place(name, backend):
    rng = np.random.default_rng(1)
    params = make_params(rng)
    ids = {key: id(val) for key, val in params.items()}
    opt = getattr(fopt, name)()
    grad_seq = make_grads(rng, params, 2)
    with fastconv.using_backend(backend):
        opt.update(params, grad_seq[0])
        states = {attr: dict(getattr(opt, attr)) for attr in STATE[name]}
        opt.update(params, grad_seq[1])
    assert {key: id(val) for key, val in params.items()} == ids
    for attr, before in states.items():  # state arrays are updated in place too
        assert all(getattr(opt, attr)[key] is arr for key, arr in before.items())


@pytest.mark.parametrize("name", NAMES)
def test_state_is_none_until_first_update_then_zeros_per_key(name):
    opt = getattr(fopt, name)()
    for attr in STATE[name]:
        assert getattr(opt, attr) is None
    rng = np.random.default_rng(2)
    params = make_params(rng)
    zero_grads = {key: np.zeros_like(val) for key, val in params.items()}
    opt.update(params, zero_grads)
    for attr in STATE[name]:
        store = getattr(opt, attr)
        assert store.keys() == params.keys()
        for key, val in store.items():
            assert val.shape == params[key].shape and not val.any()
    # A key that appears later gets its own state then.
    params["W3"] = rng.standard_normal((3, 4))
    opt.update(params, {key: np.zeros_like(val) for key, val in params.items()})
    for attr in STATE[name]:
        assert getattr(opt, attr)["W3"].shape == (3, 4)


@pytest.mark.parametrize("name", [name for name in NAMES if STATE[name]])
def test_a_state_entry_set_to_none_is_refused_and_nothing_moves(name):
    # it reached the kernels' plumbing as None: AttributeError: 'NoneType' ... 'base'
    opt = getattr(fopt, name)()
    rng = np.random.default_rng(3)
    params = make_params(rng)
    grads = {key: rng.standard_normal(val.shape) for key, val in params.items()}
    opt.update(params, grads)
    store = getattr(opt, STATE[name][0])
    store["b1"] = None
    before = copy.deepcopy((params, [getattr(opt, attr) for attr in STATE[name]]))
    with pytest.raises(ValueError, match=rf"{STATE[name][0]}\['b1'\] has NoneType but "
                                         r"params\['b1'\] has shape"):
        opt.update(params, grads)
    after = (params, [getattr(opt, attr) for attr in STATE[name]])
    for key in params:
        np.testing.assert_array_equal(before[0][key], after[0][key])
    assert before[1][0]["b1"] is None and after[1][0]["b1"] is None


@pytest.mark.parametrize("name", NAMES)
def test_grads_or_params_that_are_not_dicts_are_refused(name):
    params = make_params(np.random.default_rng(4))
    for args, which in (((params, [1, 2]), "grads"), ((list(params.values()), params), "params")):
        with pytest.raises(TypeError, match=f"{which} must be a dict of arrays"):
            getattr(fopt, name)().update(*args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_params_are_written_back(name, backend):
    rng = np.random.default_rng(4)
    contiguous = make_params(rng)
    grad_seq = make_grads(rng, contiguous, 3)
    base = {key: np.asfortranarray(val) for key, val in contiguous.items()}
    base["W1"] = np.zeros((30, 40))
    base["W1"][:, ::2] = contiguous["W1"]  # a strided view into a bigger array
    strided = dict(base, W1=base["W1"][:, ::2])
    with fastconv.using_backend(backend):
        run(getattr(fopt, name)(**HYPER[name]), contiguous, grad_seq)
        run(getattr(fopt, name)(**HYPER[name]), strided, grad_seq)
    assert_dicts_equal(strided, contiguous)
    assert np.array_equal(base["W1"][:, ::2], contiguous["W1"])
    assert not base["W1"][:, 1::2].any()


def _alias_state(name, opt, params, grads):
    """Makes arrays of one update share memory, as a script might, and returns the grads."""
    if name == "Adam":  # one state array for both moments
        for key in params:
            opt.m[key] = opt.v[key]
    elif name in ("AdaGrad", "RMSprop"):  # the parameter itself as the squared-gradient sum
        for key in params:
            opt.h[key] = params[key]
    else:  # the gradient is the parameter
        return params
    return grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["SGD", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_arrays_that_share_memory_update_as_the_book_does(name, backend):
    # The book's statements each read what the one before wrote; a fused kernel would read
    # every operand of an element first. (Momentum is left out: the book rebinds v to a new
    # array, which undoes any sharing, and fastconv updates v in place.)
    rng = np.random.default_rng(8)
    params = make_params(rng)
    first, later = make_grads(rng, params, 2)
    expected = copy.deepcopy(params)
    oracle = ORACLES[name](**HYPER[name])
    opt = getattr(fopt, name)(**HYPER[name])
    oracle.update(expected, copy.deepcopy(first))
    with fastconv.using_backend(backend):
        opt.update(params, first)
        assert_dicts_equal(params, expected)
        book_grads = _alias_state(name, oracle, expected, copy.deepcopy(later))
        grads = _alias_state(name, opt, params, later)
        with np.errstate(invalid="ignore"):  # the square root of a shared state below 0
            for _ in range(3):
                oracle.update(expected, book_grads)
                opt.update(params, grads)
    for key in params:  # NaN where a shared state went negative under a square root: both
        np.testing.assert_array_equal(params[key], expected[key], err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_grads_of_other_dtype_or_layout_are_cast_to_the_param(name):
    rng = np.random.default_rng(6)
    params = make_params(rng, np.float32)
    grads64 = make_grads(rng, params, 2)
    for grads in grads64:
        for key in grads:
            grads[key] = np.asfortranarray(grads[key].astype(np.float64))
    expected = copy.deepcopy(params)
    grads64[1]["b1"] = grads64[1]["b1"].astype(np.float32)  # already right: used as is,
    grads64[1]["b1"].flags.writeable = False                 # even read-only
    cast_grads = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads64]
    run(getattr(fopt, name)(), expected, cast_grads)
    opt = getattr(fopt, name)()
    run(opt, params, grads64)
    assert all(val.dtype == np.float32 for val in params.values())
    assert_dicts_equal(params, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_grads_that_broadcast_to_the_param_update_as_the_books_statements(name, backend):
    # `params[key] -= lr * grads[key]` broadcasts a number, or one value per column
    rng = np.random.default_rng(8)
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grad_seq = [{"W": rng.standard_normal(3), "b": np.float64(rng.standard_normal())},
                {"W": rng.standard_normal((1, 3)), "b": rng.standard_normal(1)}]
    expected = copy.deepcopy(params)
    run(ORACLES[name](**HYPER[name]), expected, grad_seq)
    with fastconv.using_backend(backend):
        run(getattr(fopt, name)(**HYPER[name]), params, grad_seq)
    assert_dicts_equal(params, expected)


@pytest.mark.parametrize("name", NAMES)
def test_grads_that_do_not_broadcast_to_the_param_are_refused(name):
    params = {"b": np.ones(4)}
    opt = getattr(fopt, name)()
    for grad in (np.ones((1, 4)), np.ones(3)):  # (1, 4) broadcasts past the param's shape
        with pytest.raises(ValueError, match=r"grads\['b'\] has shape .* but params\['b'\] "
                                             r"has shape \(4,\), to which it does not "
                                             r"broadcast"):
            opt.update(params, {"b": grad})
    np.testing.assert_array_equal(params["b"], np.ones(4))


def test_float16_params_fall_back_to_numpy_kernels():
    params = {"W": np.linspace(-1, 1, 12, dtype=np.float16).reshape(3, 4)}
    grads = {"W": np.ones((3, 4), np.float16)}
    expected = copy.deepcopy(params)
    OracleMomentum().update(expected, grads)
    fopt.Momentum().update(params, grads)
    assert params["W"].dtype == np.float16
    assert np.array_equal(params["W"], expected["W"])


# --- bad input leaves everything untouched ---------------------------------------------------

def _snapshot(opt, params):
    return copy.deepcopy(params), copy.deepcopy(vars(opt))


def _assert_unchanged(opt, params, snapshot):
    params_before, vars_before = snapshot
    assert_dicts_equal(params, params_before)
    now = vars(opt)
    assert now.keys() == vars_before.keys()
    for attr, before in vars_before.items():
        if isinstance(before, dict):
            assert_dicts_equal(now[attr], before)
        else:
            assert now[attr] == before, attr


def _bad_missing(params, grads):
    del grads["b1"]


def _bad_shape(params, grads):
    grads["W2"] = grads["W2"].T


def _bad_shape_same_size(params, grads):
    # contiguous, of the right size and dtype: only its shape is wrong
    grads["W2"] = np.ascontiguousarray(grads["W2"].T)


def _bad_int_param(params, grads):
    params["b2"] = np.arange(7)


def _bad_readonly_param(params, grads):
    params["b2"].flags.writeable = False


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "after-one-update"])
@pytest.mark.parametrize("bad, error, words", [
    (_bad_missing, KeyError, ["'b1'"]),
    (_bad_shape, ValueError, ["'W2'", "(7, 20)", "(20, 7)"]),
    (_bad_shape_same_size, ValueError, ["'W2'", "(7, 20)", "(20, 7)"]),
    (_bad_int_param, TypeError, ["'b2'", "int64"]),
    (_bad_readonly_param, ValueError, ["'b2'", "read-only"]),
], ids=["missing-grad", "shape", "contiguous-shape", "int-param", "read-only"])
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_and_changes_nothing(name, bad, error, words, fresh):
    rng = np.random.default_rng(7)
    params = make_params(rng)
    opt = getattr(fopt, name)()
    if not fresh:
        opt.update(params, make_grads(rng, params, 1)[0])
    grads = make_grads(rng, params, 1)[0]
    bad(params, grads)  # the bad entry is late in the dict: earlier keys must stay untouched
    snapshot = _snapshot(opt, params)
    with pytest.raises(error) as info:
        opt.update(params, grads)
    for word in words:
        assert word in str(info.value)
    _assert_unchanged(opt, params, snapshot)


def test_state_of_another_shape_is_refused():
    opt = fopt.Momentum()
    opt.update({"W": np.ones((2, 3))}, {"W": np.ones((2, 3))})
    params = {"A": np.ones(4), "W": np.ones((3, 2))}
    snapshot = _snapshot(opt, params)
    with pytest.raises(ValueError, match="v\\['W'\\]"):
        opt.update(params, {"A": np.ones(4), "W": np.ones((3, 2))})
    _assert_unchanged(opt, params, snapshot)


def test_kernels_refuse_mismatched_sizes():
    kernels = backend_module.kernels("numba")
    with pytest.raises(ValueError):
        kernels.sgd_update(np.zeros(5), np.zeros(4), 0.1)


# --- property test -------------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)
unit = st.floats(0.0, 0.999)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(NAMES), shape_a=shapes, shape_b=shapes,
       lr=st.floats(1e-4, 1.0), momentum=unit, decay=unit, beta1=unit, beta2=unit,
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1),
       backend=st.sampled_from(BACKENDS))
def test_property_random_shapes_and_hyperparameters(name, shape_a, shape_b, lr, momentum,
                                                    decay, beta1, beta2, dtype, seed, backend):
    hyper = {"SGD": dict(lr=lr), "Momentum": dict(lr=lr, momentum=momentum),
             "Nesterov": dict(lr=lr, momentum=momentum), "AdaGrad": dict(lr=lr),
             "RMSprop": dict(lr=lr, decay_rate=decay),
             "Adam": dict(lr=lr, beta1=beta1, beta2=beta2)}[name]
    opt, params, _, expected = run_both(name, dtype, backend, steps=3, seed=seed,
                                        shapes={"a": shape_a, "b": shape_b}, hyper=hyper)
    for key, val in params.items():
        assert val.dtype == dtype and val.shape == expected[key].shape
        if dtype == np.float64:
            assert np.array_equal(val, expected[key]), key
        else:
            # float32 rounds each term of the update, and the terms are O(1) here (standard
            # normal parameters and gradients, lr <= 1) even where the result cancels to
            # near 0 (Nesterov, shape (), seed 244: -0.0022453368 against -0.0022452688,
            # one unit in the last place of the terms): atol is on the terms' scale
            np.testing.assert_allclose(val, expected[key], rtol=1e-6, atol=1e-6, err_msg=key)


# --- the book's own usage: Nesterov's order, plain numbers, hyperparameters -------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_nesterov_follows_upstream_order_three_steps_by_hand(backend):
    # lr = momentum = 0.5, so momentum**2 = 0.25 and (1 + momentum) * lr = 0.75; every value
    # is exact in binary. Each step: p += 0.25 * v; p -= 0.75 * g; v = 0.5 * v - 0.5 * g.
    #   g = 1:  p = 1 + 0 - 0.75 = 0.25;                 v = 0 - 0.5 = -0.5
    #   g = 2:  p = 0.25 - 0.125 - 1.5 = -1.375;         v = -0.25 - 1 = -1.25
    #   g = -1: p = -1.375 - 0.3125 + 0.75 = -0.9375;    v = -0.625 + 0.5 = -0.125
    # (the pre-2021 order, v first, would give p = 0.125 after the first step already)
    expected = [(0.25, -0.5), (-1.375, -1.25), (-0.9375, -0.125)]
    opt = fopt.Nesterov(lr=0.5, momentum=0.5)
    params = {"a": np.array([1.0]), "x": 1.0}
    with fastconv.using_backend(backend):
        for g, (p, v) in zip((1.0, 2.0, -1.0), expected):
            opt.update(params, {"a": np.array([g]), "x": g})
            assert params["a"][0] == p and opt.v["a"][0] == v
            assert params["x"] == p and opt.v["x"] == v


def _bowl_gradient(x, y):
    # ch06/optimizer_compare_naive.py's f(x, y) = x**2 / 20 + y**2, written out here
    return x / 10.0, 2.0 * y


BOOK_NAIVE_LR = {"SGD": 0.95, "Momentum": 0.1, "Nesterov": 0.1, "AdaGrad": 1.5,
                 "RMSprop": 0.1, "Adam": 0.3}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_plain_float_params_match_the_book_bit_for_bit(name, backend):
    """The book's ch06 script keeps params = {'x': -7.0, 'y': 2.0} and float gradients."""
    lr = BOOK_NAIVE_LR[name]
    ours, book = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
    opt, oracle = getattr(fopt, name)(lr=lr), ORACLES[name](lr=lr)
    with fastconv.using_backend(backend):
        for _ in range(30):
            gx, gy = _bowl_gradient(ours["x"], ours["y"])
            opt.update(ours, {"x": gx, "y": gy})
            bx, by = _bowl_gradient(book["x"], book["y"])
            oracle.update(book, {"x": bx, "y": by})
            for key in ("x", "y"):
                assert type(ours[key]) is type(book[key]), key  # float for SGD, else np.float64
                assert float(ours[key]).hex() == float(book[key]).hex(), key
    assert ours != {"x": -7.0, "y": 2.0}


def test_numpy_scalar_params_keep_their_type():
    params = {"a": np.float32(3.0), "b": np.float64(-1.0), "c": 2, "d": np.int64(4)}
    fopt.Momentum(lr=0.5).update(params, {"a": 1.0, "b": 2.0, "c": 1, "d": 2})
    assert type(params["a"]) is np.float32 and params["a"] == np.float32(2.5)
    assert type(params["b"]) is np.float64 and params["b"] == -2.0
    # numbers other than NumPy floats meet Momentum's np.float64 state: np.float64, as in the book
    assert type(params["c"]) is np.float64 and params["c"] == 1.5
    assert type(params["d"]) is np.float64 and params["d"] == 3.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [True, "0.5", [1.0], None, 1j])
def test_params_that_are_not_numbers_are_refused(name, bad):
    params = {"W": np.ones(3), "z": bad}
    opt = getattr(fopt, name)()
    with pytest.raises(TypeError, match=r"params\['z'\]"):
        opt.update(params, {"W": np.ones(3), "z": 1.0})
    assert params["z"] is bad and np.array_equal(params["W"], np.ones(3))
    assert all(getattr(opt, attr) is None for attr in STATE[name])


HYPERPARAMETERS = {"SGD": ("lr",), "Momentum": ("lr", "momentum"),
                   "Nesterov": ("lr", "momentum"), "AdaGrad": ("lr",),
                   "RMSprop": ("lr", "decay_rate"), "Adam": ("lr", "beta1", "beta2")}


@pytest.mark.parametrize("bad, error", [(None, TypeError), ("0.1", TypeError),
                                        (True, TypeError), (np.array([0.1]), TypeError),
                                        (float("nan"), ValueError), (float("inf"), ValueError)])
@pytest.mark.parametrize("name", NAMES)
def test_bad_hyperparameters_raise_naming_them_and_change_nothing(name, bad, error):
    for attr in HYPERPARAMETERS[name]:
        with pytest.raises(error, match=attr):
            getattr(fopt, name)(**{attr: bad})
        # set after construction, as a script may: the update refuses it and changes nothing
        rng = np.random.default_rng(3)
        params = make_params(rng)
        opt = getattr(fopt, name)()
        opt.update(params, make_grads(rng, params, 1)[0])
        setattr(opt, attr, bad)
        snapshot = _snapshot(opt, params)
        with pytest.raises(error, match=attr):
            opt.update(params, make_grads(rng, params, 1)[0])
        params_before, vars_before = snapshot
        assert_dicts_equal(params, params_before)
        for state in STATE[name]:
            assert_dicts_equal(getattr(opt, state), vars_before[state])
        if name == "Adam":
            assert opt.iter == 1


@pytest.mark.parametrize("attr, bad", [("beta1", 1.0), ("beta2", -0.1), ("beta1", 1.5)])
def test_adam_betas_must_lie_below_one(attr, bad):
    with pytest.raises(ValueError, match=attr + r" must lie in \[0, 1\)"):
        fopt.Adam(**{attr: bad})


@pytest.mark.parametrize("attr", ["beta1", "beta2"])
def test_adam_takes_a_beta_of_zero_the_lower_end_of_its_range(attr):
    # beta1 = 0 is RMSprop-like Adam with no momentum; the range [0, 1) includes it
    rng = np.random.default_rng(5)
    params = make_params(rng)
    opt = fopt.Adam(lr=0.01, **{attr: 0})
    grads = make_grads(rng, params, 1)[0]
    opt.update(params, grads)
    assert opt.iter == 1 and all(np.all(np.isfinite(value)) for value in params.values())


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), (None, TypeError)])
def test_adam_iter_is_checked_before_anything_changes(bad, error):
    opt, params = fopt.Adam(), {"W": np.ones(3)}
    opt.iter = bad
    with pytest.raises(error, match="iter"):
        opt.update(params, {"W": np.ones(3)})
    assert opt.m is None and opt.v is None and opt.iter is bad
    assert np.array_equal(params["W"], np.ones(3))


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_a_float_parameter_comes_back_with_the_books_type(name):
    # The book's arithmetic: a Python float meets a NumPy state array (v, h, m) and becomes
    # np.float64; SGD on plain floats keeps a float, and a NumPy gradient makes it np.float64.
    # The zero-change rule compares these types, so a notebook shows the same thing.
    import fastconv.optimizer as optimizers
    plain, numpy_grad = {'x': -7.0}, {'x': -7.0}
    opt, opt2 = getattr(optimizers, name)(), getattr(optimizers, name)()
    for _ in range(2):
        opt.update(plain, {'x': 0.5})
        opt2.update(numpy_grad, {'x': np.float64(0.5)})
    assert type(plain['x']) is (float if name == "SGD" else np.float64)
    assert type(numpy_grad['x']) is np.float64


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_arrays_that_overlap_as_views_of_one_array_update_as_the_book_does(backend):
    # two views of one buffer, shifted by one element: distinct objects whose memory
    # overlaps, which the check of memory owners must not take for separate arrays
    rng = np.random.default_rng(9)
    params = make_params(rng)
    first, later = make_grads(rng, params, 2)
    expected = copy.deepcopy(params)
    oracle = ORACLES["Adam"](**HYPER["Adam"])
    opt = fopt.Adam(**HYPER["Adam"])
    oracle.update(expected, copy.deepcopy(first))
    with fastconv.using_backend(backend):
        opt.update(params, first)
        for optimizer in (oracle, opt):
            for key, value in params.items():
                buffer = np.concatenate([optimizer.m[key].ravel(), [0.5]])
                optimizer.m[key] = buffer[:-1].reshape(value.shape)
                optimizer.v[key] = buffer[1:].reshape(value.shape)
        with np.errstate(invalid="ignore"):
            for _ in range(3):
                oracle.update(expected, copy.deepcopy(later))
                opt.update(params, later)
    for key in params:
        np.testing.assert_array_equal(params[key], expected[key], err_msg=key)

"""512-bit vectors of float32 or float64 as values in compiled loops, for kernels whose
accumulators must stay in registers.

LLVM vectorizes a loop by itself, but it keeps one accumulator a loop: a direct convolution
written as plain loops ran at under half the FMA peak, reloading its broadcast weights for
every vector. Here a kernel names its accumulators, each a ``Vector`` that LLVM holds in one
AVX-512 register (two AVX2 registers on older CPUs, where the same code stays correct but
spills).

    load(array, i)            the vector of array[i:i + lanes]     (array 1-D, C-contiguous)
    store(array, i, v)        array[i:i + lanes] = v
    splat(x)                  the vector of lanes copies of x
    fma(a, b, c)              a * b + c, one rounding per lane

``lanes`` is 16 for float32 and 8 for float64 (``LANES``). ``load8``, ``store8`` and
``splat8`` take vectors of 8 lanes in either dtype (256 bits of float32), for data whose rows
fill no more: a 256-bit load splits a cache line less often than a 512-bit one, and more
load ports take it. ``fma`` takes either.

For the pools, on two vectors a, b of one type (a then b: 2 * lanes values):

    evens(a, b), odds(a, b)   the values at the even (odd) places: a deinterleave
    interleave_low(a, b)      a[0], b[0], a[1], b[1], ... from the first halves of a and b
    interleave_high(a, b)     the same from their second halves (the inverse of evens/odds)
    where_le(a, b, x, y)      per lane x if a <= b else y (ordered: y where either is NaN)
    where_ge(a, b, x, y)      x if a >= b else y (ordered)
    where_ne(a, b, x, y)      x if a != b else y (unordered: x where either is NaN)
    store_as_int(ints, i, v)  ints[i:i + lanes] = v, truncated to the int64 array's type
    ints_as_float32(ints, i)  the float32 vector of ints[i:i + 16] (an int64 array)
    ints_as_float32_8(ints, i) the same for 8 lanes, a vector of ``load8``'s type
    any_nonzero(v)            whether a lane is not 0 (NaN is not)

Nothing here checks bounds: the caller proves its indices in range before its loops
(``direct.py``). Run as Python
(``NUMBA_DISABLE_JIT``), a vector is a NumPy array and the same kernels give the same
results, only slowly.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .compile_options import compiled_as

__all__ = ["FULL_WIDTH", "LANES", "VECTOR_BYTES", "load", "store", "splat", "fma", "load8",
           "store8", "splat8", "evens", "odds", "interleave_low",
           "interleave_high", "where_le", "where_ge", "where_ne",
           "store_as_int", "ints_as_float32", "ints_as_float32_8", "any_nonzero"]

VECTOR_BYTES = 64
LANES = {np.dtype(np.float32): 16, np.dtype(np.float64): 8}


def _compiles_for_avx512():
    """Whether Numba's compiled code gets 512-bit registers: the CPU it targets (the host,
    unless NUMBA_CPU_NAME names another) has AVX-512."""
    from numba.core import config
    if config.CPU_NAME is not None and config.CPU_NAME != "host":
        features = config.CPU_FEATURES or ""
    else:
        from llvmlite import binding
        features = config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


FULL_WIDTH = _compiles_for_avx512()  # else a vector takes two or four registers


class Vector(types.Type):
    """A vector of a float dtype, 512 bits unless lanes says, as a compiled value."""

    def __init__(self, dtype, lanes=None):
        self.dtype = dtype
        self.lanes = lanes or VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


_VECTORS = {types.float32: Vector(types.float32), types.float64: Vector(types.float64)}
_EIGHTS = {types.float32: Vector(types.float32, 8), types.float64: _VECTORS[types.float64]}


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = ir.FloatType() if fe_type.dtype == types.float32 else ir.DoubleType()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


# The Python versions: what NUMBA_DISABLE_JIT runs, and what the compiled ones mean.
def load(array, index):
    return array[index:index + LANES[array.dtype]].copy()


def store(array, index, vector):
    array[index:index + LANES[array.dtype]] = vector


def splat(value):
    return np.full(LANES[np.asarray(value).dtype], value)


def fma(a, b, c):
    return a * b + c  # NumPy rounds the product first; compiled code does not


def load8(array, index):
    return array[index:index + 8].copy()


def store8(array, index, vector):
    array[index:index + 8] = vector


def splat8(value):
    return np.full(8, value)


def evens(a, b):
    return np.concatenate((a, b))[0::2]


def odds(a, b):
    return np.concatenate((a, b))[1::2]


def interleave_low(a, b):
    half = len(a) // 2
    return np.stack((a[:half], b[:half]), axis=1).ravel()


def interleave_high(a, b):
    half = len(a) // 2
    return np.stack((a[half:], b[half:]), axis=1).ravel()


def where_le(a, b, x, y):
    return np.where(a <= b, x, y)


def where_ge(a, b, x, y):
    return np.where(a >= b, x, y)


def where_ne(a, b, x, y):
    return np.where(a != b, x, y)


def store_as_int(ints, index, vector):
    ints[index:index + len(vector)] = vector.astype(ints.dtype)


def ints_as_float32(ints, index):
    return ints[index:index + 16].astype(np.float32)


def ints_as_float32_8(ints, index):
    return ints[index:index + 8].astype(np.float32)


def any_nonzero(vector):
    return bool(np.any(vector != 0))


def _vector_of(array_type, vectors=_VECTORS):
    if (isinstance(array_type, types.Array) and array_type.ndim == 1
            and array_type.layout == "C" and array_type.dtype in vectors):
        return vectors[array_type.dtype]
    return None


def _vector_pointer(context, builder, array_type, array, index, vector):
    """The address of array[index] as a pointer to the vector type."""
    data = context.make_array(array_type)(context, builder, array).data
    vector_type = context.get_value_type(vector)
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


def _loader(vectors):
    @intrinsic
    def load_vector(typingctx, array, index):
        vector = _vector_of(array, vectors)
        if vector is None or not isinstance(index, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            pointer = _vector_pointer(context, builder, signature.args[0], args[0], index,
                                      vector)
            return builder.load(pointer, align=signature.args[0].dtype.bitwidth // 8)
        return vector(array, index), codegen
    return load_vector


def _storer(vectors):
    @intrinsic
    def store_vector(typingctx, array, index, vector):
        if (_vector_of(array, vectors) is None or vector != _vector_of(array, vectors)
                or not isinstance(index, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            pointer = _vector_pointer(context, builder, signature.args[0], args[0], index,
                                      vector)
            builder.store(args[2], pointer, align=signature.args[0].dtype.bitwidth // 8)
            return context.get_dummy_value()
        return types.void(array, index, vector), codegen
    return store_vector


def _splatter(vectors):
    @intrinsic
    def splat_vector(typingctx, value):
        if value not in vectors:
            return None
        vector = vectors[value]

        def codegen(context, builder, signature, args):
            vector_type = context.get_value_type(vector)
            single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), args[0],
                                            ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(
                single, single,
                ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), [0] * vector.lanes))
        return vector(value), codegen
    return splat_vector


_load, _store, _splat = _loader(_VECTORS), _storer(_VECTORS), _splatter(_VECTORS)
_load8, _store8, _splat8 = _loader(_EIGHTS), _storer(_EIGHTS), _splatter(_EIGHTS)


@intrinsic
def _fma(typingctx, a, b, c):
    if not (isinstance(a, Vector) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        vector_type = args[0].type
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
            f"llvm.fma.v{a.lanes}f{a.dtype.bitwidth}")
        return builder.call(function, args)
    return a(a, b, c), codegen


def _shuffler(places):
    """An intrinsic taking vectors a, b of one type to the vector of the values at
    places(lanes) of a then b (LLVM's shufflevector picks the permutes)."""
    @intrinsic
    def shuffle(typingctx, a, b):
        if not (isinstance(a, Vector) and a == b):
            return None

        def codegen(context, builder, signature, args):
            mask = ir.Constant(ir.VectorType(ir.IntType(32), a.lanes), places(a.lanes))
            return builder.shuffle_vector(args[0], args[1], mask)
        return a(a, b), codegen
    return shuffle


def _chooser(comparison, ordered):
    """An intrinsic (a, b, x, y) -> per lane x where a `comparison` b holds, else y."""
    @intrinsic
    def choose(typingctx, a, b, x, y):
        if not (isinstance(a, Vector) and a == b == x == y):
            return None

        def codegen(context, builder, signature, args):
            compare = builder.fcmp_ordered if ordered else builder.fcmp_unordered
            return builder.select(compare(comparison, args[0], args[1]), args[2], args[3])
        return a(a, b, x, y), codegen
    return choose


@intrinsic
def _store_as_int(typingctx, ints, index, vector):
    if not (_int64_run(ints, index) and isinstance(vector, Vector)):
        return None

    def codegen(context, builder, signature, args):
        pointer, int_vector = _int_vector_pointer(context, builder, signature, args,
                                                  vector.lanes)
        builder.store(builder.fptosi(args[2], int_vector), pointer, align=8)
        return context.get_dummy_value()
    return types.void(ints, index, vector), codegen


def _int64_run(ints, index):
    """Whether (ints, index) type a run of a 1-D C-contiguous int64 array."""
    return (isinstance(ints, types.Array) and ints.ndim == 1 and ints.layout == "C"
            and ints.dtype == types.int64 and isinstance(index, types.Integer))


def _int_vector_pointer(context, builder, signature, args, lanes):
    """(the address of ints[index] as a pointer to `lanes` int64s, their vector type), for
    an intrinsic whose first two arguments are ints and index."""
    int_vector = ir.VectorType(ir.IntType(64), lanes)
    index = context.cast(builder, args[1], signature.args[1], types.intp)
    data = context.make_array(signature.args[0])(context, builder, args[0]).data
    return builder.bitcast(builder.gep(data, [index]), int_vector.as_pointer()), int_vector


def _int_loader(vector):
    """An intrinsic taking (ints, index) to the float32 vector (of `vector`'s type) of the
    int64 run there."""
    @intrinsic
    def load_ints(typingctx, ints, index):
        if not _int64_run(ints, index):
            return None

        def codegen(context, builder, signature, args):
            pointer, _ = _int_vector_pointer(context, builder, signature, args, vector.lanes)
            return builder.sitofp(builder.load(pointer, align=8),
                                  context.get_value_type(vector))
        return vector(ints, index), codegen
    return load_ints


@intrinsic
def _any_nonzero(typingctx, vector):
    if not isinstance(vector, Vector):
        return None

    def codegen(context, builder, signature, args):
        zero = ir.Constant(args[0].type, None)
        lanes = builder.fcmp_unordered("!=", args[0], zero)
        bits = builder.bitcast(lanes, ir.IntType(vector.lanes))
        return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(vector.lanes), 0))
    return types.boolean(vector), codegen


_evens = _shuffler(lambda lanes: list(range(0, 2 * lanes, 2)))
_odds = _shuffler(lambda lanes: list(range(1, 2 * lanes, 2)))
_interleave_low = _shuffler(lambda lanes: [i // 2 + (i % 2) * lanes for i in range(lanes)])
_interleave_high = _shuffler(lambda lanes: [lanes // 2 + i // 2 + (i % 2) * lanes
                                            for i in range(lanes)])
_where_le, _where_ge = _chooser("<=", True), _chooser(">=", True)
_where_ne = _chooser("!=", False)

for _public, _compiled in ((load, _load), (store, _store), (splat, _splat), (fma, _fma),
                           (load8, _load8), (store8, _store8), (splat8, _splat8),
                           (evens, _evens), (odds, _odds),
                           (interleave_low, _interleave_low),
                           (interleave_high, _interleave_high), (where_le, _where_le),
                           (where_ge, _where_ge), (where_ne, _where_ne),
                           (store_as_int, _store_as_int),
                           (ints_as_float32, _int_loader(_VECTORS[types.float32])),
                           (ints_as_float32_8, _int_loader(_EIGHTS[types.float32])),
                           (any_nonzero, _any_nonzero)):
    compiled_as(_public, _compiled)
del _public, _compiled

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
load ports take it. ``fma`` takes either. Nothing here checks bounds: the
caller proves its indices in range before its loops (``direct.py``). Run as Python
(``NUMBA_DISABLE_JIT``), a vector is a NumPy array and the same kernels give the same
results, only slowly.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

__all__ = ["FULL_WIDTH", "LANES", "VECTOR_BYTES", "load", "store", "splat", "fma", "load8",
           "store8", "splat8"]

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


@overload(load)
def _load_overload(array, index):
    return lambda array, index: _load(array, index)


@overload(store)
def _store_overload(array, index, vector):
    return lambda array, index, vector: _store(array, index, vector)


@overload(splat)
def _splat_overload(value):
    return lambda value: _splat(value)


@overload(fma)
def _fma_overload(a, b, c):
    return lambda a, b, c: _fma(a, b, c)


@overload(load8)
def _load8_overload(array, index):
    return lambda array, index: _load8(array, index)


@overload(store8)
def _store8_overload(array, index, vector):
    return lambda array, index, vector: _store8(array, index, vector)


@overload(splat8)
def _splat8_overload(value):
    return lambda value: _splat8(value)

"""``prefetch(arr, i)``: ask the CPU to start loading ``arr[i]`` into cache.

Event-driven delivery reads CSR rows and target neurons at addresses known
a few events in advance; issuing their loads early overlaps the cache misses
instead of paying them one after another. It is a hint: it changes no value,
and a pure-Python stand-in is used when ``NUMBA_DISABLE_JIT=1``.
"""

from numba.core import cgutils, config, types
from numba.extending import intrinsic
from llvmlite import ir

if config.DISABLE_JIT:

    def prefetch(arr, i):
        return None

else:

    @intrinsic
    def prefetch(typingctx, arr, i):
        """Prefetch the cache line of ``arr[i]`` (1-D or flat index) for reading."""
        if not isinstance(arr, types.Array) or not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            arr_type = signature.args[0]
            array = context.make_array(arr_type)(context, builder, args[0])
            data = builder.bitcast(array.data, ir.IntType(8).as_pointer())
            offset = builder.mul(args[1], context.get_constant(signature.args[1],
                                                                context.get_abi_sizeof(
                                                                    context.get_data_type(arr_type.dtype))))
            ptr = builder.gep(data, [offset])
            i32 = ir.IntType(32)
            fn_type = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.prefetch.p0")
            # read, high temporal locality, data cache
            builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(arr, i), codegen

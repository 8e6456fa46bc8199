# C types for the compiled twin of jsonrpc.py (see jsonproto.core.compiled).

from jsonproto.core.envelope cimport _validId


cpdef tuple request(object value)
cpdef dict response(dict reply, object rpcId)

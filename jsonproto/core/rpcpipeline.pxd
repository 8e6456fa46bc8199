# C types for the compiled twin of rpcpipeline.py (see jsonproto.core.compiled).

from jsonproto.core.envelope cimport _answer, errorReply
from jsonproto.core.output cimport Owed
from jsonproto.core.pipeline cimport Pipeline
from jsonproto.wire.codec cimport decodeOrRefuse


cdef class RPCPipeline(Pipeline):
    cdef _answerFrame(self, bytes frame)
    cdef bint _refused(self, object message) except -1
    cdef object _answerRPC(self, object value, Owed group)
    cdef _answerBatch(self, list batch)
    cpdef complete(self, Owed owed, object reply)
    cdef bytes _frame(self, dict reply)
    cdef bytes _frameBatch(self, list replies)

# C types for the compiled twin of output.py (see jsonproto.core.compiled).

cimport cython

from jsonproto.core.envelope cimport checkPush
from jsonproto.core.traffic cimport Traffic
from jsonproto.wire.codec cimport encode
from jsonproto.wire.framing cimport encodeInt32


cpdef object errorCodeOf(dict reply)


@cython.final
cdef class Owed:
    cdef public object frame
    cdef public bint oneWay
    cdef public object message
    cdef public Owed group
    cdef public Py_ssize_t index
    cdef public list replies
    cdef public Py_ssize_t missing


# A subclass in another module calls these methods through the vtable, as
# it calls its own (Pipeline is not final): the split costs no call.  None
# is declared inline: from another module an inline method is called through
# the vtable all the same.
cdef class PipelineOutput:
    cdef public Traffic traffic
    cdef public object closeReason
    cdef public object closeKind
    cdef bint _lengthPrefixed
    cdef object _dispatcher
    cdef long long _maxErrors
    cdef double _errorDecay
    cdef object _now
    cdef object _awaitReply
    cdef dict _errorCounts
    cdef object _logMessage
    cdef list _out
    cdef Py_ssize_t _outBytes
    cdef object _owed
    cdef Py_ssize_t _detached
    cdef double _errorCost
    cdef double _errorTime
    cdef object _errorCode
    cdef bint _stopped

    cdef _wait(self, object pending, object message)
    cpdef complete(self, Owed owed, object reply)
    cdef _advance(self)
    cdef object _owing(self)
    cdef _drop(self, object reply, object message)
    cdef _place(self, Owed owed)
    cdef _emit(self, dict reply, object message)
    cdef bytes _frame(self, dict reply)
    cdef int _noteError(self, dict reply) except -1
    cdef bytes _encoded(self, object value)
    cdef bytes _framed(self, bytes encoded)
    cpdef push(self, dict message)
    cpdef bytes takeOutput(self)
    cdef _errorReplied(self, str code)
    cpdef halt(self)
    cdef _stop(self, str reason, str kind)

# C types for the compiled twin of pipeline.py (see jsonproto.core.compiled).

cimport cython

from jsonproto.core.envelope cimport Straight, _answer, answerStraight, checkPush, errorReply, readStraight
from jsonproto.core.traffic cimport Traffic
from jsonproto.dispatch.latency cimport HandlerLatency
from jsonproto.wire.codec cimport decodeOrRefuse, encode
from jsonproto.wire.framing cimport FrameQueue, encodeInt32


cdef Py_ssize_t _BATCH_BYTES
cdef Py_ssize_t _TIME_CHECK_EVERY


cdef object _decoded(object message, object frame)


@cython.final
cdef class Owed:
    cdef public object frame
    cdef public bint oneWay
    cdef public object message
    cdef public Owed group
    cdef public Py_ssize_t index
    cdef public list replies
    cdef public Py_ssize_t missing


cdef class Pipeline:
    cdef public Traffic traffic
    cdef public bint refusing
    cdef public object closeReason
    cdef public object closeKind
    cdef public object host
    cdef FrameQueue _decoder
    cdef bint _rpc
    cdef bint _typedFirst
    cdef bint _lengthPrefixed
    cdef bint _closesOnTooLong
    cdef object _dispatcher
    cdef dict _handlers
    cdef dict _oneWay
    cdef Py_ssize_t _detached
    cdef HandlerLatency _latency
    cdef object _context
    cdef Py_ssize_t _maxMessageSize
    cdef Py_ssize_t _maxPending
    cdef long long _maxErrors
    cdef double _errorDecay
    cdef double _turnBudget
    cdef object _now
    cdef object _awaitReply
    cdef dict _errorCounts
    cdef object _budget
    cdef Py_ssize_t _held
    cdef object _logMessage
    cdef list _out
    cdef Py_ssize_t _outBytes
    cdef object _owed
    cdef double _errorCost
    cdef double _errorTime
    cdef object _errorCode
    cdef bint _stopped

    cpdef receive(self, bytes data)
    cdef _charge(self, Py_ssize_t held)
    cdef inline Py_ssize_t _owedCount(self) except -1
    @cython.locals(handled=Py_ssize_t, turnStarted=double, traffic=Traffic, decoder=FrameQueue)
    cpdef int run(self) except -1
    @cython.locals(straight=Straight)
    cdef _answerFrame(self, bytes frame)
    cdef object _answerRPC(self, object value, Owed group)
    cdef _answerBatch(self, list batch)
    cdef object _answerOneWay(self, object handler, dict message, bint answered=*)
    @cython.locals(started=double)
    cdef object _callOneWay(self, object call, object argument, str messageType, object message, object frame, bint answered)
    cdef _drop(self, object reply, object message)
    cdef _refuseFrame(self, object frame)
    cdef _wait(self, object pending, object message)
    cpdef complete(self, Owed owed, object reply)
    cdef object _owing(self)
    cdef _place(self, Owed owed)
    cdef bytes _frameBatch(self, list replies)
    cdef _emit(self, dict reply, object message)
    cdef bytes _frame(self, dict reply)
    cpdef push(self, dict message)
    cpdef bytes takeOutput(self)
    cdef _errorReplied(self, str code)
    cpdef halt(self)
    cdef _stop(self, str reason, str kind)

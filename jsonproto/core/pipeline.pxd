# C types for the compiled twin of pipeline.py (see jsonproto.core.compiled).

cimport cython

from jsonproto.core.envelope cimport Straight, _answer, answerStraight, errorReply, readStraight
from jsonproto.core.output cimport Owed, PipelineOutput
from jsonproto.core.traffic cimport Traffic
from jsonproto.dispatch.latency cimport HandlerLatency
from jsonproto.wire.codec cimport decodeOrRefuse
from jsonproto.wire.framing cimport FrameQueue


cdef Py_ssize_t _BATCH_BYTES
cdef Py_ssize_t _TIME_CHECK_EVERY


cdef object _decoded(object message, object frame)


cdef class Pipeline(PipelineOutput):
    cdef public bint refusing
    cdef public object host
    cdef FrameQueue _decoder
    cdef bint _typedFirst
    cdef Straight _straight
    cdef bint _closesOnTooLong
    cdef dict _handlers
    cdef dict _oneWay
    cdef HandlerLatency _latency
    cdef object _context
    cdef Py_ssize_t _maxMessageSize
    cdef Py_ssize_t _maxPending
    cdef double _turnBudget
    cdef object _budget
    cdef Py_ssize_t _held

    cpdef bint receive(self, bytes data) except -1
    cdef _charge(self, Py_ssize_t held)
    cdef inline Py_ssize_t _owedCount(self) except -1
    @cython.locals(handled=Py_ssize_t, turnStarted=double, traffic=Traffic, decoder=FrameQueue)
    cpdef int run(self) except -1
    @cython.locals(straight=Straight)
    cdef _answerFrame(self, bytes frame)
    cdef object _answerOneWay(self, object handler, dict message, bint answered=*)
    @cython.locals(started=double)
    cdef object _callOneWay(self, object call, object argument, str messageType, object message, object frame, bint answered)
    cdef _refuseFrame(self, object frame)

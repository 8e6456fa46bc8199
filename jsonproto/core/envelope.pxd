# C types for the compiled twin of envelope.py (see jsonproto.core.compiled).

cimport cython

from jsonproto.dispatch.latency cimport HandlerLatency
from jsonproto.dispatch.typed cimport TypedRequest
from jsonproto.wire.codec cimport decodeOrRefuse, mayHoldBigInteger


cpdef bint _validId(object messageId) except -1
cpdef checkPush(object message)
cpdef dict errorReply(object error, object message, object detail=*)
cpdef object answer(object dispatcher, object message, object context)

@cython.locals(started=double, request=dict)
cpdef object _answer(dict handlers, HandlerLatency latency, object dispatcher, object message, object context)

cdef dict _withId(dict reply, dict message)

cdef dict _okReply(dict result, bint hasId, object messageId)
cdef bint _heldToCodecRules(bytes frame) except -1

@cython.final
cdef class Straight:
    cdef public str messageType
    cdef public bint hasId
    cdef public object messageId
    cdef public TypedRequest handler
    cdef public object value
    cdef public bint oneWay

@cython.locals(messageType=str, typedRequest=TypedRequest, oneWay=bint)
cpdef bint readStraight(dict handlers, dict oneWayHandlers, bytes frame, Straight straight) except -1

@cython.locals(started=double, messageType=str, hasId=bint)
cpdef object answerStraight(Straight straight, HandlerLatency latency, object dispatcher, bytes frame, object context)


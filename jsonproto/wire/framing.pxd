# C types for the compiled twin of framing.py (see jsonproto.core.compiled).

cimport cython

cdef class FrameQueue:
    cdef list _frames
    cdef Py_ssize_t _next
    cpdef feed(self, bytes data)
    cdef list _startFeed(self)
    cpdef object nextFrame(self)
    cdef Py_ssize_t _queuedBytes(self, Py_ssize_t overhead)


cdef class LineDecoder(FrameQueue):
    cdef public Py_ssize_t maxLength
    cdef list _partial
    cdef Py_ssize_t _partialLength
    cdef bint _discarding
    @cython.locals(pieces=list, last=Py_ssize_t, index=Py_ssize_t, start=Py_ssize_t)
    cpdef feed(self, bytes data)
    cdef _keepTail(self, bytes tail)
    cpdef abandon(self)


cdef class Int32Decoder(FrameQueue):
    cdef public Py_ssize_t maxLength
    cdef bytearray _partial
    cdef bint _failed
    @cython.locals(view=cython.p_uchar, offset=Py_ssize_t, end=Py_ssize_t, stop=Py_ssize_t, length=Py_ssize_t,
                   maxLength=Py_ssize_t)
    cpdef feed(self, bytes data)
    cpdef abandon(self)


@cython.locals(size=Py_ssize_t)
cdef void _addLine(list frames, bytes line, Py_ssize_t maxLength) except *

cpdef bytes encodeLine(bytes payload)
@cython.locals(size=Py_ssize_t)
cpdef bytes encodeInt32(bytes payload)

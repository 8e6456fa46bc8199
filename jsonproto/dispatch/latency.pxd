# C types for the compiled twin of latency.py (see jsonproto.core.compiled).

cimport cython

cdef long long _SAMPLE


@cython.final
cdef class Tally:
    cdef public long long n


cdef class HandlerLatency:
    cdef dict _tallies
    cdef long long _calls
    cdef public dict errors
    cdef public dict buckets
    cdef public dict sums
    @cython.locals(tally=Tally)
    cpdef count(self, str label)
    cpdef double countCall(self, str messageType) except -1.0
    cpdef countError(self, object messageType)
    cpdef observe(self, str messageType, double seconds)
    cpdef finished(self, str messageType, double started)

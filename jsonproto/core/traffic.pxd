# C types for the compiled twin of traffic.py (see jsonproto.core.compiled).

cdef class Traffic:
    cdef public long long messagesIn
    cdef public long long messagesOut
    cdef public long long bytesIn
    cdef public long long bytesOut

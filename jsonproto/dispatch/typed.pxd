# C types for the compiled twin of typed.py (see jsonproto.core.compiled):
# compiled, a typed handler's wrapper is called without a Python frame, and
# the pipeline reads its fields as a struct's.

cdef class TypedRequest:
    cdef public object function
    cdef public object requestType
    cdef public object decode
    cdef bint _strips

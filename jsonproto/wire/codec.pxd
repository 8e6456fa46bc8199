# C types for the compiled twin of codec.py (see jsonproto.core.compiled).

cimport cython

cpdef object decode(bytes payload)
cpdef object decodeOrRefuse(bytes payload)
cdef object _refused(bytes payload, str reason)

@cython.locals(size=Py_ssize_t, position=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t)
cpdef bint mayHoldBigInteger(bytes payload) except -1

cpdef bytes encode(object value, bint newline=*)

@cython.locals(flat=bint, number=double)
cdef bint _wroteNoNaN(object value, bytes encoded, bint newline) except -1
cpdef bytes _encodeStrictly(object value)
cpdef object _decodeStrictly(bytes payload)

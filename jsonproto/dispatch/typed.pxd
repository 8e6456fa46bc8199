# C types for the compiled twin of typed.py (see jsonproto.core.compiled):
# none are declared; compiled, a typed handler's wrapper is called without
# a Python frame.  What a message got wrong is worded by
# jsonproto.dispatch.explain, which stays plain Python.

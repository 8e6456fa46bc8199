# C types for the compiled twin of typed.py (see jsonproto.core.compiled):
# none are declared; compiled, a typed handler's wrapper is called without
# a Python frame.

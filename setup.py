"""
The one thing setup.cfg cannot say: the optional C extension.

jsonproto.core._speedups answers the common messages of a read without the
interpreter's overhead (see jsonproto/core/fastpath.py, which it mirrors).  It is
optional: where no C compiler is at hand the build goes on without it and
the pure-Python fast path is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "jsonproto.core._speedups",
            ["jsonproto/core/_speedups.c", "jsonproto/core/_flatjson.c"],
            depends=["jsonproto/core/_flatjson.h"],
            optional=True,
            # A call to an undeclared function builds a module that crashes: fail
            # the build instead (the install then goes on without it).
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        )
    ]
)

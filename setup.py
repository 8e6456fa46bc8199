"""
The one thing setup.cfg cannot say: the compiled core.

The pipeline's modules (jsonproto.core.compiled.COMPILED) are compiled by
Cython, each as it is, into an extension module beside its source; the
.pxd files beside them give the compiled code its C types.  It is optional:
where no C compiler (or no Cython) is at hand the build goes on without it,
and the same modules run as Python.
"""

import os

from setuptools import Extension, setup

COMPILED = (
    "jsonproto.wire.framing",
    "jsonproto.wire.codec",
    "jsonproto.core.traffic",
    "jsonproto.core.envelope",
    "jsonproto.core.jsonrpc",
    "jsonproto.dispatch.latency",
    "jsonproto.dispatch.typed",
    "jsonproto.core.output",
    "jsonproto.core.pipeline",
    "jsonproto.core.rpcpipeline",
)

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - pyproject.toml asks for Cython
    extensions = []
else:
    extensions = cythonize(
        [
            Extension(name, [name.replace(".", os.sep) + ".py"], optional=True, extra_compile_args=["-O2"])
            for name in COMPILED
        ],
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True,
    )
    # cythonize makes new Extensions: a C compiler missing or failing must
    # still leave a working (pure Python) install.
    for extension in extensions:
        extension.optional = True

setup(ext_modules=extensions)

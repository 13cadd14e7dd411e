"""The one compiled part: the decision/outcome fast path in C (``streaming/_fastpath.c``).

Everything else is in ``pyproject.toml``. The extension is optional: where no C compiler
is found the install still succeeds, and the fast path runs msgspec alone (slower, the
same results); ``fairwatch.streaming.batch.NATIVE`` says which.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fairwatch.streaming._fastpath",
            ["streaming/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)

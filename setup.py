"""Build the optional C extensions of storekit; metadata is in pyproject.toml.

- ``storekit._cframing``, the record framing, is a cffi module in
  out-of-line API mode compiled from csrc/framing.c and csrc/xxh32.c.
  Without it ``storekit.backend`` is ``"python"``.
- ``storekit._chitpath``, the hit path of ``LRUCache.get`` and
  ``TTLCache.get``, is a CPython C-API module compiled from
  csrc/hitpath.c. It is built on CPython only. Without it
  ``storekit.cache.lru.HITPATH`` is ``"python"``.

Each extension is optional: when one fails to build (no C compiler, no
Python headers, no cffi), the build logs a warning and installs the package
without it, and storekit uses the pure-Python implementation instead.

Development build into the source tree: ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import os
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import (
    CCompilerError,
    CompileError,
    ExecError,
    LinkError,
    PlatformError,
)

MODULE_NAME = "storekit._cframing"
C_SOURCES = ["csrc/framing.c", "csrc/xxh32.c"]
INCLUDE_DIRS = ["csrc"]

HITPATH_MODULE_NAME = "storekit._chitpath"
HITPATH_SOURCES = ["csrc/hitpath.c"]

# Declarations from csrc/framing.h and csrc/xxh32.h that Python calls. cffi's
# cdef cannot read the headers themselves, because they use the preprocessor.
CDEF = """
#define SK_BLOCK_SIZE ...
#define SK_HEADER_SIZE ...
#define SK_STATUS_OK ...
#define SK_STATUS_TRUNCATED ...
#define SK_STATUS_CORRUPT ...
#define SK_STATUS_FULL ...
#define SK_INVALID_ARGUMENT ...

typedef struct {
    int64_t payload_start;
    int64_t payload_length;
    int64_t type;
} sk_fragment;

typedef struct {
    int64_t count;
    int64_t next_position;
    int64_t bad_position;
    int32_t status;
    int32_t reason;
} sk_scan_result;

uint32_t sk_xxh32(const void *data, size_t length, uint32_t seed);
uint64_t sk_framed_size(int64_t length, int64_t block_offset);
int64_t sk_frame(const uint8_t *payload, int64_t length, int64_t block_offset,
                 uint8_t *out, int64_t out_capacity);
int sk_scan(const uint8_t *buffer, int64_t length, int64_t start,
            uint64_t base_offset, sk_fragment *fragments, int64_t capacity,
            sk_scan_result *result);
int64_t sk_first_valid_header(const uint8_t *buffer, int64_t length,
                              uint64_t base_offset, int64_t from_position);
"""

# Errors that mean "no usable C toolchain here": a missing or failing
# compiler or linker, or a platform without one.
BUILD_ERRORS = (CCompilerError, CompileError, LinkError, ExecError, PlatformError)


def make_ffi():
    """Return the cffi builder for ``storekit._cframing``."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        MODULE_NAME,
        '#include "framing.h"\n#include "xxh32.h"\n',
        sources=C_SOURCES,
        include_dirs=INCLUDE_DIRS,
    )
    return ffi


class OptionalBuildExt(build_ext):
    """Build each C extension if possible; warn and carry on without it if not."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self._failed: set[str] = set()  # names of extensions that failed to build

    def run(self) -> None:
        try:
            self._add_cffi_source()
        except ImportError as error:
            # Build the other extensions without the cffi one.
            self._warn_skipped(MODULE_NAME, f"cffi is not importable ({error})")
            self.extensions = [e for e in self.extensions if e.name != MODULE_NAME]
        try:
            super().run()
        except BUILD_ERRORS as error:
            for ext in self.extensions:
                self._warn_skipped(ext.name, str(error))

    def build_extension(self, ext: Extension) -> None:
        if self.compiler.compiler_type == "unix":  # GCC, Clang and compatibles
            ext.extra_compile_args = [*ext.extra_compile_args, "-O2"]
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as error:
            self._failed.add(ext.name)
            self._warn_skipped(ext.name, str(error))

    def copy_extensions_to_source(self) -> None:
        # An --inplace build copies each built module into the source tree.
        # Skip the modules that failed, whose files do not exist.
        all_extensions = self.extensions
        self.extensions = [e for e in all_extensions if e.name not in self._failed]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = all_extensions

    def _add_cffi_source(self) -> None:
        """Generate the cffi wrapper C file in build_temp and add it to the sources."""
        generated = os.path.join(self.build_temp, "_cframing.c")
        for ext in self.extensions:
            if ext.name == MODULE_NAME and generated not in ext.sources:
                os.makedirs(self.build_temp, exist_ok=True)
                make_ffi().emit_c_code(generated)
                ext.sources.insert(0, generated)

    def _warn_skipped(self, name: str, cause: str) -> None:
        if name == HITPATH_MODULE_NAME:
            fallback = (
                "LRUCache and TTLCache use their pure-Python get "
                '(storekit.cache.lru.HITPATH == "python")'
            )
        else:
            fallback = (
                "uses the pure-Python implementation of the record framing "
                '(storekit.backend == "python")'
            )
        self.warn(
            f"building the C extension {name} failed: {cause.rstrip('.')}. "
            f"storekit is installed without it and {fallback}. Install a C "
            "compiler and the Python headers, then reinstall, to use the "
            "faster C implementation."
        )


def extensions() -> list[Extension]:
    """Return the C extensions to build on this Python implementation."""
    result = [
        Extension(MODULE_NAME, sources=list(C_SOURCES), include_dirs=INCLUDE_DIRS)
    ]
    # The hit path uses the CPython C API, which PyPy emulates slowly or not
    # at all; other implementations use the pure-Python get.
    if platform.python_implementation() == "CPython":
        result.append(Extension(HITPATH_MODULE_NAME, sources=list(HITPATH_SOURCES)))
    return result


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)

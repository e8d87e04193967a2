"""Only the C part of the build; everything else is in pyproject.toml.

ESP's compiled fast path (ipseclab/ipsec/fastpath.py) is optional: a machine without a C
compiler or the headers of OpenSSL and Python installs ipseclab all the same, in pure Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "ipseclab.ipsec._espfast", ["ipseclab/ipsec/_espfast.c"], libraries=["crypto"],
    optional=True,
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"])])

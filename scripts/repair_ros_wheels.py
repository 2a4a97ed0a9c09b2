"""Point the ROS 2 wheels' CMake exports at this interpreter's headers.

The Kilted wheels on PyPI were built in a manylinux container and their
``*__rosidl_generator_pyExport.cmake`` files still name that container's Python and NumPy
include folders (``/opt/python/cp311-cp311/...``). CMake refuses imported targets whose
include folders do not exist, so building any message package fails. Rewriting the paths
in place, inside the venv, fixes this without creating folders outside the project.
Running it again is a no-op.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILD_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"
)


def repair(prefix: Path) -> list[Path]:
    """Rewrite build-machine include paths in every CMake file under ``prefix``."""
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    if not Path(python_include, "Python.h").is_file():
        sys.exit(
            f"repair_ros_wheels: no Python.h in {python_include}; install this Python's development "
            "headers (Debian/Ubuntu: apt-get install python3-dev) and run make setup again."
        )
    changed = []
    for cmake_file in prefix.rglob("*.cmake"):
        text = cmake_file.read_text(errors="surrogateescape")
        if "/opt/python/" not in text:
            continue
        fixed = BUILD_NUMPY_INCLUDE.sub(numpy_include, text)
        fixed = BUILD_PYTHON_INCLUDE.sub(python_include, fixed)
        if fixed != text:
            cmake_file.write_text(fixed, errors="surrogateescape")
            changed.append(cmake_file)
    return changed


def main() -> int:
    prefix = Path(sys.prefix)
    changed = repair(prefix)
    print(f"repair_ros_wheels: rewrote include paths in {len(changed)} CMake file(s) under {prefix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

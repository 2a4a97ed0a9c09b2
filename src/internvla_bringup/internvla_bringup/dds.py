"""The DDS settings every process of the graph gets, however it is started (runner or ros2 launch)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
FASTDDS_RMW = "rmw_fastrtps_cpp"


def dds_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Variables to add to ``environ`` so that Fast DDS uses the package's profile.

    Its 32 MiB shared-memory segment is what lets raw camera frames reach the policy (with Fast DDS's
    default segment none of 30 VGA frames arrived). A profile the user chose, or another RMW, is left
    alone; nothing is added where the package's share folder is not installed.
    """
    if FASTDDS_PROFILE_VARIABLE in environ or environ.get("RMW_IMPLEMENTATION", FASTDDS_RMW) != FASTDDS_RMW:
        return {}
    try:
        profile = Path(get_package_share_directory("internvla_bringup")) / "config" / "fastdds.xml"
    except PackageNotFoundError:
        return {}
    return {FASTDDS_PROFILE_VARIABLE: str(profile)} if profile.is_file() else {}

"""Every process of the graph gets the package's Fast DDS profile unless the user chose otherwise."""

from __future__ import annotations

from pathlib import Path

from internvla_bringup.dds import FASTDDS_PROFILE_VARIABLE, dds_environment


def test_the_installed_profile_is_added_for_fast_dds() -> None:
    added = dds_environment({})
    profile = Path(added[FASTDDS_PROFILE_VARIABLE])
    assert profile.name == "fastdds.xml" and "<segment_size>33554432</segment_size>" in profile.read_text()
    assert dds_environment({"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}) == added


def test_a_chosen_profile_or_another_rmw_is_left_alone() -> None:
    assert dds_environment({FASTDDS_PROFILE_VARIABLE: "/mine.xml"}) == {}
    assert dds_environment({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}

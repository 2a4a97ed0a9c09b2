"""Delta end-effector actions -> targets and gripper openings, under each convention parameter."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.control.action import ActionConvention
from internvla_policy.control.pose import Pose, rotation_angle, rotvec_to_matrix, rpy_to_matrix

# The end effector yawed +90 deg: its x axis is the base's y axis.
CURRENT = Pose(np.array([0.4, 0.1, 0.3]), rpy_to_matrix(np.array([0.0, 0.0, np.pi / 2])))
ACTION = np.array([0.01, 0.0, -0.02, 0.0, 0.0, 0.1, 1.0])


def test_base_frame_adds_translation_in_base_axes_and_premultiplies_rotation():
    target = ActionConvention(frame="base").target_pose(CURRENT, ACTION)
    np.testing.assert_allclose(target.position, [0.41, 0.1, 0.28])
    np.testing.assert_allclose(
        target.rotation, rpy_to_matrix(np.array([0.0, 0.0, np.pi / 2 + 0.1])), atol=1e-12
    )


def test_ee_frame_rotates_the_translation_into_the_tool_axes():
    target = ActionConvention(frame="ee").target_pose(CURRENT, ACTION)
    np.testing.assert_allclose(target.position, [0.4, 0.11, 0.28], atol=1e-12)
    # About the tool z (= base z here) both compositions agree; a roll shows the difference.
    roll = np.array([0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 1.0])
    ee_target = ActionConvention(frame="ee").target_pose(CURRENT, roll)
    base_target = ActionConvention(frame="base").target_pose(CURRENT, roll)
    np.testing.assert_allclose(ee_target.rotation, CURRENT.rotation @ rpy_to_matrix(roll[3:6]), atol=1e-12)
    np.testing.assert_allclose(base_target.rotation, rpy_to_matrix(roll[3:6]) @ CURRENT.rotation, atol=1e-12)
    assert rotation_angle(ee_target.rotation, base_target.rotation) > 0.1


def test_rotvec_format_reads_axis_angle():
    action = np.array([0.0, 0.0, 0.0, 0.1, 0.2, 0.0, 0.0])
    target = ActionConvention(rotation_format="rotvec").target_pose(CURRENT, action)
    np.testing.assert_allclose(target.rotation, rotvec_to_matrix(action[3:6]) @ CURRENT.rotation, atol=1e-12)


def test_signs_and_scales_map_dataset_axes_onto_the_robot():
    convention = ActionConvention(
        axis_signs=(1.0, -1.0, 1.0, 1.0, 1.0, -1.0), translation_scale=2.0, rotation_scale=0.5
    )
    action = np.array([0.01, 0.02, 0.0, 0.0, 0.0, 0.2, 1.0])
    target = convention.target_pose(CURRENT, action)
    np.testing.assert_allclose(target.position, CURRENT.position + np.array([0.02, -0.04, 0.0]))
    np.testing.assert_allclose(
        target.rotation, rpy_to_matrix(np.array([0.0, 0.0, np.pi / 2 - 0.1])), atol=1e-12
    )


@pytest.mark.parametrize(
    ("inverted", "binary", "value", "opening"),
    [
        (False, True, 1.0, 1.0),
        (False, True, 0.49, 0.0),
        (False, True, 0.5, 1.0),
        (False, False, 0.3, 0.3),
        (False, False, 1.7, 1.0),
        (True, True, 1.0, 0.0),
        (True, False, 0.3, 0.7),
    ],
)
def test_gripper_opening(inverted, binary, value, opening):
    convention = ActionConvention(gripper_inverted=inverted, gripper_binary=binary)
    assert convention.gripper_opening(np.array([0, 0, 0, 0, 0, 0, value])) == pytest.approx(opening)

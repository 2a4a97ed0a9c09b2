#!/usr/bin/env bash
# Enter the distro and the workspace, then run the given command.
# Discovery defaults to this machine; set ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET to reach the robot.
set -e
# shellcheck source=/dev/null
source "/opt/ros/${ROS_DISTRO}/setup.bash"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-SUBNET}"
# shellcheck source=/dev/null
source /opt/internvla_ws/scripts/env.sh
exec "$@"

# Enter the internvla-ros environment in the current shell:   source scripts/env.sh
# The venv, the ROS 2 wheels (or the sourced distro), the built workspace, discovery kept on
# this machine unless you chose otherwise, and the command-line tools on PATH.
_internvla_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ ! -f "$_internvla_root/install/setup.bash" ]; then
    echo "internvla: the workspace is not built yet; run 'make setup' in $_internvla_root first" >&2
    return 1 2>/dev/null || exit 1
fi
# shellcheck source=/dev/null
source "$_internvla_root/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
    export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi
# shellcheck source=/dev/null
source "$_internvla_root/install/setup.bash"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export MUJOCO_GL="${MUJOCO_GL:-osmesa}"
# A shared-memory segment large enough for raw camera frames (see the file's comment).
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_internvla_root/src/internvla_bringup/config/fastdds.xml}"
for _internvla_bin in "$_internvla_root"/install/internvla_*/lib/internvla_*; do
    case ":$PATH:" in *":$_internvla_bin:"*) ;; *) PATH="$_internvla_bin:$PATH" ;; esac
done
export PATH
unset _internvla_root _internvla_bin

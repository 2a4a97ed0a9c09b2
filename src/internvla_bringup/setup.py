from glob import glob

from setuptools import find_packages, setup

package_name = "internvla_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="internvla-ros maintainers",
    maintainer_email="maintainers@internvla-ros.dev",
    description="Robot profiles, launch files, graph runner, simulated robot and dataset replay.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "internvla = internvla_bringup.cli:main",
            "sim_robot_node = internvla_bringup.ros.sim_robot_node:main",
            "replay_node = internvla_bringup.ros.replay_node:main",
            "inference_node = internvla_bringup.ros.inference_node:main",
        ],
    },
)

from setuptools import find_packages, setup

package_name = "internvla_grounding"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="internvla-ros maintainers",
    maintainer_email="maintainers@internvla-ros.dev",
    description="Spatial grounding node and answer parser for InternVLA-M1.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "internvla-ground = internvla_grounding.cli:main",
            "grounding_node = internvla_grounding.ros.grounding_node:main",
        ],
    },
)

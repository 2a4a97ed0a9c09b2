from setuptools import find_packages, setup

package_name = "internvla_policy"

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
    description="InternVLA-M1 model core, control core and policy node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "internvla-m1 = internvla_policy.model.cli:main",
            "policy_node = internvla_policy.ros.policy_node:main",
        ],
    },
)

from pathlib import Path

from setuptools import find_packages, setup

package_name = "internvla_policy"


def installed_tree(root: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file under ``root`` into the share folder, keeping paths."""
    folders: dict[str, list[str]] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            folders.setdefault(str(Path("share", package_name, path.parent)), []).append(str(path))
    return list(folders.items())


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        *installed_tree("models"),  # the built-in default model, where `checkpoint: builtin` looks
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

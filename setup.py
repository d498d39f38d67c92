"""Only here to ship the top-level templates/ folder inside the wheel as ``imgforge._templates``.

Everything else about the package is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["imgforge", "imgforge.*"]), "imgforge._templates"],
    package_dir={"imgforge._templates": "templates"},
    package_data={"imgforge._templates": ["*.j2", "*.txt", "*.yml"]},
)

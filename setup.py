"""Everything but the package list is in pyproject.toml.

The list is computed here: `calibration/` (a top-level folder of the source tree) installs as
`swiftformer_qnn.calibration` (see [tool.setuptools.package-dir]), and pyproject's automatic
discovery cannot find the package's own subpackages and add that mapped one as well. Its photo
folders are listed as (data-only) packages so setuptools ships them without warning.
"""

from setuptools import find_packages, setup

CALIBRATION = ["swiftformer_qnn.calibration", "swiftformer_qnn.calibration.images", "swiftformer_qnn.calibration.heldout"]

setup(packages=[*find_packages(include=["swiftformer_qnn", "swiftformer_qnn.*"]), *CALIBRATION])

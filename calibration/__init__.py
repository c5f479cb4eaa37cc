"""The shipped calibration and held-out photographs and their provenance.

In the source tree this is the top-level `calibration/` folder; a wheel installs it as the
package `swiftformer_qnn.calibration` (package data), so the main job runs from any directory.
"""

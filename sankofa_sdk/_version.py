# Between releases main carries the next version as a development release, so a wheel built
# from it never claims to be the last release. At a release: drop ".dev0" here and rename the
# CHANGELOG's "Unreleased" section to the version and date (tests/test_packaging.py checks).
__version__ = "0.2.0.dev0"

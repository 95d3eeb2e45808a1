"""The test suite (a package: a top-level ``tests`` package that a dependency installs, looker-sdk's, would
otherwise shadow the suite's modules: ``tests.integration`` would resolve to its)."""

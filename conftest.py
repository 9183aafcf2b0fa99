# The harness's options and markers come from its `pytest11` entry point (harness.pytest_plugin);
# this file only registers the repository's fixture modules.
pytest_plugins = ["fixtures.cli", "fixtures.stacks"]

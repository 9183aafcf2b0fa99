# The harness's pytest plugin is registered by the `pytest11` entry point of the installed
# package (see pyproject.toml); nothing else belongs here.

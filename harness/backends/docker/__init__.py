"""The docker backend: the stack as containers (testcontainers), built from local images only.

Importing this package disables testcontainers' Ryuk reaper before testcontainers itself is
imported anywhere: Ryuk's image would be pulled from Docker Hub, and nothing here may pull.
`reaper` does Ryuk's job by label instead.
"""

import os

os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

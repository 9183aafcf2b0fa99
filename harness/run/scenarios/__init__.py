"""The chaos scenarios, shipped with the harness: one short pytest module per failure, each
building a `Scenario` and running it through the plugin's `run_scenario` fixture.

`harness run` runs these (from wherever the package is installed) unless the current directory
has a `scenarios/` folder of its own; this repository's `scenarios/` re-exports them.
"""

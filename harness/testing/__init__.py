"""Deliberately broken recovery layers (`broken_fixes`) and the worker that runs them (`worker`),
for the detection-power tests: each must turn a scenario red. Never a production choice."""

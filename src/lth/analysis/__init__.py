"""Analyses of trained networks beyond a lottery run's own records (see docs/design.md, "Instability").

Modules are imported by name, not from here: the lottery runner imports `instability` and
`measure`, while `rewind` imports the runner, so this package's import must pull in neither.
"""

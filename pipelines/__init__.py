"""The shipped example pipeline specs (TOML), installed as package data for `mallard demo`."""

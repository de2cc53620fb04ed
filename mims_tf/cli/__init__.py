"""The `mims` command line."""

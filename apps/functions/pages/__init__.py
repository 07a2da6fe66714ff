"""Console pages of functions: the project overview and functions table, a function's
overview, versions and settings (overview.py, versions.py), its environments, traffic,
rollback and timeline (environments.py)."""

"""pytest configuration shared by the unit and the lab tests (see tests/lab/conftest.py)."""

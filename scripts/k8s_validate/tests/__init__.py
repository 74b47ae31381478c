"""Unit tests of the k8s_validate checks: `python -m unittest discover -s scripts -t scripts`."""

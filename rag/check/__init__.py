"""Checking what was written: citations against the cited abstracts (verify, support) and
what a model must never say (guard)."""

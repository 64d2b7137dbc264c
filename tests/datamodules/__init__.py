"""Tests of datamodules/: every benchmark read from tiny files in its real format, and the real parts when present."""

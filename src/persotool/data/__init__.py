"""Data stage: reading raw logs, canonical dataset directories, synthetic logs."""

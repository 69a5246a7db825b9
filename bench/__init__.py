"""`make bench`: the issues' speed, size and accuracy figures, measured and written to JSON files (never asserted
in tests)."""

"""pullthrough's test suite."""

"""The docs' walkthroughs, run as tests."""

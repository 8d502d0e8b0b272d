"""sim_tests."""

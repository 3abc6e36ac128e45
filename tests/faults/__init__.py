"""Fault-injection tests (issue 27): each injects a fault a user meets and checks that nothing is lost or mixed."""

"""Stairway: the command line that ties the daemon and the trainer together."""

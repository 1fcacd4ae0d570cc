"""Local brokers that speak the real wire protocols: `stairway sim` serves them, the tests run
against them (issue 22 §5)."""

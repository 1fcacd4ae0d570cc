"""OANDA v20 adapter: pure parsing here; the I/O client and adapter come next (issue #5)."""

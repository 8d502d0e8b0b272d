"""Bit-exact NumPy reference model of EOQ 8-bit integer training."""

"""Amaranth HDL of the EOQ int8 training core."""

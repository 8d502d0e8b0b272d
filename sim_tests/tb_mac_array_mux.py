"""The MacArray benches on the array without its holding bank (``overlap=False``): the readout is a
row multiplexer over the accumulators themselves."""

from sim_tests.tb_mac_array import controls, extremes, random_tiles  # noqa: F401  (cocotb collects them)

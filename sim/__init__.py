"""spikeforge verification: cocotb testbenches on Verilator, regression, reports."""

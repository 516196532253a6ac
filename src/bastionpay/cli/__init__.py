"""The `bastionpay` command line: one module per command group."""

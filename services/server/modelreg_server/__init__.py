"""`modelreg`: the command line that serves, migrates and checks the registry."""

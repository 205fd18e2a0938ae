"""Backdoor repair methods; each module has a frozen `Config` with the paper's defaults and `run`."""

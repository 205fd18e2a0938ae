"""Backdoor detection by trigger reverse engineering: Neural Cleanse (docs/methods.md §2)."""

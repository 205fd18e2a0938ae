"""Backdoor detection by trigger reverse engineering: Neural Cleanse (methods.md §2)."""

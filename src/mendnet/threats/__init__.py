"""Threat simulation: backdoor poisoning and adversarial attacks."""

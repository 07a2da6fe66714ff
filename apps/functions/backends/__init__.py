"""Execution backends: one interface, chosen per environment."""

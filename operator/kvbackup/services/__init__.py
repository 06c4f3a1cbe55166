"""Domain logic: backup runs, restores and their decisions. No kopf import here."""

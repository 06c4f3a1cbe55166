"""What users read: status documents, Events, and the fate of every failure.

No kopf here: the handlers and any command-line tool present outcomes the same way.
"""

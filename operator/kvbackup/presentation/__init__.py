"""What users read: status documents and Events, per-item wording, a KeyBackup's gauges.

No kopf here: the handlers and any command-line tool present outcomes the same way.
Whether a failure is tried again is not presentation: see ``services.retry_policy``.
"""

"""kvbackup: declarative backup and restore of Azure Key Vault keys on Kubernetes.

Layers, each importing only those below it (import-linter checks it): ``handlers`` (kopf
glue) and ``cli`` (the command line) -> ``presentation`` (what users read) -> ``runtime``
(the composition root) -> ``adapters`` (Key Vault, Blob Storage, Secrets, Kubernetes) ->
``services`` (the domain, behind ``services.ports``) -> ``config`` -> ``api`` (typed
resources) -> ``errors``. README.md's Development section maps every module in a line.
"""

__version__ = "0.1.0"

"""kvbackup: declarative backup and restore of Azure Key Vault keys on Kubernetes."""

__version__ = "0.1.0"

"""I/O edges: Key Vault, Kubernetes; each maps its SDK's exceptions to kvbackup.errors."""

"""pgo: GitOps for Docker Compose on plain servers."""

__version__ = "0.1.0"

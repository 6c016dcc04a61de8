"""dmdesk: a desktop administrator for DeepLake Deep Memory training (ZIP-004 + ZIP-005)."""

__version__ = "0.1.0"

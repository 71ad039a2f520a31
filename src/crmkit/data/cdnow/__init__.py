"""CDNOW and donation reference data (third-party research data; see README.md here)."""

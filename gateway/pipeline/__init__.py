"""Committed inbox items become requests: workers, building, placement, service levels."""

"""pytest fixtures for the reference feature service (filled in by the reference-service work)."""

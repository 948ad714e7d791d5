"""The reference sync-enabled ArcGIS feature service and portal used by tests and the demo."""

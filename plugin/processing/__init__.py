"""Processing provider and algorithms: the same core calls as the dock, for models and qgis_process."""

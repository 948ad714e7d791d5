"""QGIS enums that moved to ``Qgis`` after QGIS 3.22, in one place.

QGIS 3.28-3.36 moved these class-scoped enums to ``Qgis`` and QGIS 4 drops the class-scoped
ones, so each is feature-detected: the new name where it exists, else the old one (3.22).
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsEditFormConfig,
    QgsFeatureRequest,
    QgsMapLayerProxyModel,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsRelation,
    QgsVectorDataProvider,
    QgsWkbTypes,
)


def _moved(new: str, old_class: Any, old: str) -> Any:
    """``Qgis.<new>`` (``"Enum.Member"``) where this QGIS has it, else ``<old_class>.<old>``
    (looked up only then: QGIS 4 has no old name)."""
    enum, member = new.split(".")
    if hasattr(Qgis, enum):
        return getattr(getattr(Qgis, enum), member)
    enum, member = old.split(".")
    return getattr(getattr(old_class, enum), member)


WKT1_ESRI = _moved("CrsWktVariant.Wkt1Esri", QgsCoordinateReferenceSystem, "WktVariant.WKT1_ESRI")
COMPOSITION = _moved(
    "RelationshipStrength.Composition", QgsRelation, "RelationStrength.Composition"
)
DRAG_AND_DROP = _moved(
    "AttributeFormLayout.DragAndDrop", QgsEditFormConfig, "EditorLayout.TabLayout"
)
POLYGON_GEOMETRY = _moved("GeometryType.Polygon", QgsWkbTypes, "GeometryType.PolygonGeometry")
SPATIAL_LAYERS = _moved("LayerFilter.HasGeometry", QgsMapLayerProxyModel, "Filter.HasGeometry")
NO_GEOMETRY = _moved("FeatureRequestFlag.NoGeometry", QgsFeatureRequest, "Flag.NoGeometry")
ADD_FEATURES = _moved(
    "VectorProviderCapability.AddFeatures", QgsVectorDataProvider, "Capability.AddFeatures"
)
FOLDER_BEHAVIOR = _moved(
    "ProcessingFileParameterBehavior.Folder", QgsProcessingParameterFile, "Behavior.Folder"
)
INTEGER_TYPE = _moved(
    "ProcessingNumberParameterType.Integer", QgsProcessingParameterNumber, "Type.Integer"
)

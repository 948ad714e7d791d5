"""QGIS enums that moved to ``Qgis`` after QGIS 3.22, in one place.

QGIS 3.28-3.36 moved these class-scoped enums to ``Qgis`` and QGIS 4 drops the class-scoped
ones, so each is feature-detected: the new name where it exists, else the old one (3.22).
"""

from __future__ import annotations

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

WKT1_ESRI = (
    Qgis.CrsWktVariant.Wkt1Esri
    if hasattr(Qgis, "CrsWktVariant")
    else QgsCoordinateReferenceSystem.WktVariant.WKT1_ESRI
)
COMPOSITION = (
    Qgis.RelationshipStrength.Composition
    if hasattr(Qgis, "RelationshipStrength")
    else QgsRelation.RelationStrength.Composition
)
DRAG_AND_DROP = (
    Qgis.AttributeFormLayout.DragAndDrop
    if hasattr(Qgis, "AttributeFormLayout")
    else QgsEditFormConfig.EditorLayout.TabLayout
)
POLYGON_GEOMETRY = (
    Qgis.GeometryType.Polygon
    if hasattr(Qgis, "GeometryType")
    else QgsWkbTypes.GeometryType.PolygonGeometry
)
SPATIAL_LAYERS = (
    Qgis.LayerFilter.HasGeometry
    if hasattr(Qgis, "LayerFilter")
    else QgsMapLayerProxyModel.Filter.HasGeometry
)
NO_GEOMETRY = (
    Qgis.FeatureRequestFlag.NoGeometry
    if hasattr(Qgis, "FeatureRequestFlag")
    else QgsFeatureRequest.Flag.NoGeometry
)
ADD_FEATURES = (
    Qgis.VectorProviderCapability.AddFeatures
    if hasattr(Qgis, "VectorProviderCapability")
    else QgsVectorDataProvider.Capability.AddFeatures
)
FOLDER_BEHAVIOR = (
    Qgis.ProcessingFileParameterBehavior.Folder
    if hasattr(Qgis, "ProcessingFileParameterBehavior")
    else QgsProcessingParameterFile.Behavior.Folder
)
INTEGER_TYPE = (
    Qgis.ProcessingNumberParameterType.Integer
    if hasattr(Qgis, "ProcessingNumberParameterType")
    else QgsProcessingParameterNumber.Type.Integer
)

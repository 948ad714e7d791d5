"""An offline map's geodatabases as QGIS layers: loading, styling, relations, reloading.

The map becomes a layer-tree group named after it (a sub-group per geodatabase when it has
several) holding its layers, in the web map's drawing order, and tables. Styling comes from the ``drawingInfo`` of the service's layer JSON that the
geodatabase keeps, converted by QGIS's own ArcGIS REST renderer conversion; field aliases and
coded-value domains make the attribute forms read like the service's. Relationship classes
become QGIS relations, and each attachments table is related to its layer by GlobalID, so the
feature form lists related rows and attachments.

Layers carry custom properties naming their offline map, geodatabase and layer id; that is how
the dock finds them again to reload them after a sync or to check for unsaved edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from qgis.core import (
    Qgis,
    QgsAttributeEditorContainer,
    QgsAttributeEditorField,
    QgsAttributeEditorRelation,
    QgsCoordinateReferenceSystem,
    QgsEditorWidgetSetup,
    QgsExpression,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMessageLog,
    QgsPalLayerSettings,
    QgsProject,
    QgsRectangle,
    QgsRelation,
    QgsRendererRange,
    QgsSymbol,
    QgsVectorLayer,
)

from .basemap_layers import add_basemaps
from .core import schema
from .core.errors import OfflineMapSyncError
from .core.offline_map import GeodatabaseEntry, OfflineMap
from .qgis_compat import COMPOSITION, DRAG_AND_DROP, WKT1_ESRI
from .resources import PLUGIN_NAME, tr

PROPERTY_FOLDER = "offline_map_sync/folder"
PROPERTY_FILE = "offline_map_sync/file"
PROPERTY_LAYER_ID = "offline_map_sync/layer_id"
PROPERTY_ATTACHMENTS = "offline_map_sync/attachments_of"
GROUP_PROPERTY = "offline_map_sync/group"
#: The relation widget type of the attachments editor (``plugin/gui/attachments_widget.py``).
ATTACHMENTS_WIDGET = "offline_map_sync_attachments"

try:  # QGIS >= 3.18 converts ArcGIS REST renderers; feature-detected so older builds still load.
    from qgis.core import QgsArcGisRestUtils
except ImportError:  # pragma: no cover - depends on the QGIS build
    QgsArcGisRestUtils = None


@dataclass
class LoadedGeodatabase:
    """The layers made for one geodatabase, by service layer id."""

    entry: GeodatabaseEntry
    group: QgsLayerTreeGroup
    layers: dict[int, QgsVectorLayer] = field(default_factory=dict)
    attachment_layers: dict[int, QgsVectorLayer] = field(default_factory=dict)
    relations: list[QgsRelation] = field(default_factory=list)
    styled: dict[int, bool] = field(default_factory=dict)


# -- spatial references ----------------------------------------------------------------------
def esri_spatial_reference(crs: QgsCoordinateReferenceSystem) -> dict[str, Any]:
    """The Esri JSON ``spatialReference`` of a QGIS CRS (EPSG code when it has one, else WKT)."""
    authid = crs.authid()
    if authid.upper().startswith("EPSG:"):
        code = int(authid.split(":", 1)[1])
        if code == 3857:
            return {"wkid": 102100, "latestWkid": 3857}
        return {"wkid": code}
    return {"wkt": crs.toWkt(WKT1_ESRI)}


def qgis_crs(spatial_reference: dict[str, Any] | None) -> QgsCoordinateReferenceSystem:
    """The QGIS CRS of an Esri JSON ``spatialReference`` (invalid CRS when unknown)."""
    if not spatial_reference:
        return QgsCoordinateReferenceSystem()
    if QgsArcGisRestUtils is not None:
        crs = QgsArcGisRestUtils.convertSpatialReference(spatial_reference)
        if crs.isValid():
            return crs
    wkid = spatial_reference.get("latestWkid") or spatial_reference.get("wkid")
    if wkid in (102100, 102113):
        wkid = 3857
    if wkid:
        return QgsCoordinateReferenceSystem(f"EPSG:{int(wkid)}")
    return QgsCoordinateReferenceSystem.fromWkt(spatial_reference.get("wkt", ""))


def area_geometry(area: dict[str, Any] | None) -> tuple[QgsGeometry, QgsCoordinateReferenceSystem]:
    """An Esri JSON envelope or polygon (an offline map's area) as a QGIS geometry and its CRS;
    an empty geometry when there is none or it cannot be read."""
    if not area:
        return QgsGeometry(), QgsCoordinateReferenceSystem()
    crs = qgis_crs(area.get("spatialReference"))
    if all(key in area for key in ("xmin", "ymin", "xmax", "ymax")):
        try:
            rect = QgsRectangle(
                float(area["xmin"]), float(area["ymin"]), float(area["xmax"]), float(area["ymax"])
            )
        except (TypeError, ValueError):
            return QgsGeometry(), crs
        return QgsGeometry.fromRect(rect), crs
    if "rings" in area and QgsArcGisRestUtils is not None:
        converted = QgsArcGisRestUtils.convertGeometry(area, "esriGeometryPolygon", False, False)
        geometry = converted[0] if isinstance(converted, tuple) else converted
        if geometry is not None:
            return QgsGeometry(geometry), crs
    return QgsGeometry(), crs


def esri_envelope(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> dict[str, Any]:
    """An Esri JSON envelope (area of interest) from a QGIS rectangle in ``crs``."""
    return {
        "xmin": rect.xMinimum(),
        "ymin": rect.yMinimum(),
        "xmax": rect.xMaximum(),
        "ymax": rect.yMaximum(),
        "spatialReference": esri_spatial_reference(crs),
    }


# -- loading ---------------------------------------------------------------------------------
def add_offline_map_to_project(
    offline_map: OfflineMap,
    project: QgsProject | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> list[LoadedGeodatabase]:
    """Add every geodatabase of ``offline_map`` to ``project`` (default: the current project),
    and its basemaps under them.

    Any group this map added earlier is replaced, so adding twice never duplicates layers.
    Returns what was made, per geodatabase. Raises GeodatabaseError for unreadable files; a
    basemap that cannot be opened is left out and named to ``on_problem`` (and the log).
    """
    project = project or QgsProject.instance()
    # Every geodatabase is read first: an unreadable one must not leave the map half-loaded.
    definitions = {}
    for entry in offline_map.geodatabases:
        with offline_map.open_geodatabase(entry) as geodatabase:
            definitions[entry.file] = {layer.id: layer for layer in geodatabase.layers}
    remove_offline_map_from_project(offline_map.folder, project)
    # One group named after the map (two maps of the same service must not both read "Demo"),
    # with a sub-group per geodatabase when there are several.
    top = project.layerTreeRoot().insertGroup(0, offline_map.title or offline_map.folder.name)
    top.setCustomProperty(GROUP_PROPERTY, _folder_key(offline_map.folder))
    several = len(offline_map.geodatabases) > 1
    loaded = []
    for entry in offline_map.geodatabases:
        group = top.addGroup(entry.title or Path(entry.file).stem) if several else top
        loaded.append(_add_geodatabase(offline_map, entry, definitions[entry.file], group, project))
    add_basemaps(
        offline_map,
        top,
        project,
        lambda layer: layer.setCustomProperty(PROPERTY_FOLDER, _folder_key(offline_map.folder)),
        on_problem or (lambda _message: None),
    )
    return loaded


def _add_geodatabase(
    offline_map: OfflineMap,
    entry: GeodatabaseEntry,
    definitions: dict[int, Any],
    group: QgsLayerTreeGroup,
    project: QgsProject,
) -> LoadedGeodatabase:
    result = LoadedGeodatabase(entry, group)
    path = str(entry.path or offline_map.folder / entry.file)
    for layer_entry in tree_order(entry.layers):
        definition = definitions.get(layer_entry.id)
        if definition is None:
            continue
        layer = QgsVectorLayer(
            f"{path}|layername={definition.table_name}", layer_entry.title or definition.name, "ogr"
        )
        _tag(layer, offline_map.folder, entry.file, layer_entry.id)
        layer_json = dict(definition.layer_json or {})
        result.styled[layer_entry.id] = _apply_style(layer, layer_json, layer_entry.opacity)
        _apply_fields(layer, layer_json)
        # Lists of features (relation editors, the attribute table's form view) name them by
        # the service's display field, not by their GlobalID.
        display = _field_named(layer, definition.display_field)
        if display:
            layer.setDisplayExpression(QgsExpression.quotedColumnRef(display))
        project.addMapLayer(layer, False)
        node = group.addLayer(layer)
        node.setItemVisibilityChecked(layer_entry.visible)
        result.layers[layer_entry.id] = layer
    _add_attachment_tables(offline_map, entry, definitions, result, path, project)
    _add_relations(entry, definitions, result, project)
    for layer_id, layer in result.layers.items():
        _arrange_form(layer, definitions[layer_id].layer_json or {}, project)
    for layer in result.attachment_layers.values():
        _arrange_form(layer, {}, project, record=ATTACHMENT_KEY_FIELDS)
    return result


def tree_order(layers) -> list:
    """Layer entries as the layer tree shows them: spatial layers top first (the last drawn is
    on top), then the tables."""
    spatial = sorted(
        (layer for layer in layers if not layer.is_table),
        key=lambda layer: -(layer.draw_order if layer.draw_order is not None else -1),
    )
    return spatial + [layer for layer in layers if layer.is_table]


def _tag(layer: QgsVectorLayer, folder: Path, file: str, layer_id: int) -> None:
    layer.setCustomProperty(PROPERTY_FOLDER, _folder_key(folder))
    layer.setCustomProperty(PROPERTY_FILE, file)
    layer.setCustomProperty(PROPERTY_LAYER_ID, int(layer_id))


def _folder_key(folder: Path) -> str:
    return str(Path(folder).absolute())


def _apply_style(layer: QgsVectorLayer, layer_json: dict, opacity: float) -> bool:
    """Style from the service's drawingInfo; True when the service's renderer was used."""
    drawing = layer_json.get("drawingInfo") or {}
    styled = False
    if QgsArcGisRestUtils is not None and layer.isSpatial():
        renderer_json = drawing.get("renderer")
        if renderer_json:
            renderer = QgsArcGisRestUtils.convertRenderer(renderer_json)
            if renderer is None and renderer_json.get("type") == "classBreaks":
                renderer = graduated_renderer(renderer_json, layer)
            if renderer is not None:
                layer.setRenderer(renderer)
                styled = True
        labeling_json = drawing.get("labelingInfo")
        if labeling_json and layer_json.get("drawingInfo", {}).get("showLabels", True):
            labeling = QgsArcGisRestUtils.convertLabeling(labeling_json)
            if labeling is not None:
                _fill_label_expressions(labeling, labeling_json)
                layer.setLabeling(labeling)
                layer.setLabelsEnabled(True)
    transparency = drawing.get("transparency") or 0
    try:
        layer_opacity = max(0.0, min(1.0, 1.0 - float(transparency) / 100.0))
    except (TypeError, ValueError):
        layer_opacity = 1.0
    layer.setOpacity(layer_opacity * float(opacity if opacity is not None else 1.0))
    return styled


def graduated_renderer(renderer_json: dict, layer: QgsVectorLayer):
    """A graduated renderer from an ArcGIS ``classBreaks`` renderer (QGIS 3.22 converts none:
    the renderer of ArcGIS Online's "Counts and Amounts" maps). Breaks are sorted; what QGIS
    cannot carry over (visual variables, the default symbol, normalization) is named in the
    log. None when the JSON has no usable field or breaks."""
    field_name = _field_named(layer, renderer_json.get("field"))
    breaks = []
    for info in renderer_json.get("classBreakInfos") or ():
        try:
            breaks.append((float(info["classMaxValue"]), info))
        except (KeyError, TypeError, ValueError):
            continue
    if not field_name or not breaks:
        return None
    breaks.sort(key=lambda pair: pair[0])
    try:
        lower = float(renderer_json.get("minValue"))
    except (TypeError, ValueError):
        lower = min(breaks[0][0], 0.0)
    ranges = []
    for upper, info in breaks:
        symbol = None
        if info.get("symbol"):
            symbol = QgsArcGisRestUtils.convertSymbol(info["symbol"])
        if symbol is None:
            symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        label = str(info.get("label") or f"{lower:g} – {upper:g}")
        ranges.append(QgsRendererRange(lower, upper, symbol, label))
        lower = upper
    renderer = QgsGraduatedSymbolRenderer(field_name, ranges)
    lost = []
    if renderer_json.get("visualVariables"):
        lost.append(tr("visual variables (size or colour by value)"))
    if renderer_json.get("defaultSymbol"):
        lost.append(tr("the symbol for other values"))
    if renderer_json.get("normalizationField") or renderer_json.get("normalizationType") not in (
        None,
        "esriNormalizeNone",
    ):
        lost.append(tr("normalization"))
    if lost:
        QgsMessageLog.logMessage(
            tr("The style of {0} was carried over without: {1}.").format(
                layer.name(), ", ".join(lost)
            ),
            PLUGIN_NAME,
            Qgis.MessageLevel.Warning,
        )
    return renderer


_ARCADE_FIELD = re.compile(r"^\s*\$feature(?:\.(\w+)|\[\s*['\"]([^'\"]+)['\"]\s*\])\s*;?\s*$")


def _fill_label_expressions(labeling: Any, labeling_json: list) -> None:
    # NOTE: QGIS 3.22 converts only the legacy ``labelExpression`` ("[name]"); services that
    # give an Arcade ``labelExpressionInfo`` get rules without text. Fill in the simple
    # ``$feature.field`` case so such labels show.
    rules = labeling.rootRule().children() if hasattr(labeling, "rootRule") else []
    for rule, info in zip(rules, labeling_json):
        current = rule.settings()
        if current is None or current.fieldName:
            continue
        expression = ((info or {}).get("labelExpressionInfo") or {}).get("expression") or ""
        match = _ARCADE_FIELD.match(expression)
        if not match:
            continue
        settings = QgsPalLayerSettings(current)
        settings.fieldName = match.group(1) or match.group(2)
        settings.isExpression = False
        rule.setSettings(settings)


def _apply_fields(layer: QgsVectorLayer, layer_json: dict) -> None:
    """Aliases, coded-value domains as value maps, read-only system fields."""
    fields = layer.fields()
    read_only = _record_fields(layer_json)
    for field_json in layer_json.get("fields") or ():
        name = field_json.get("name")
        index = fields.lookupField(name) if name else -1
        if index < 0:
            continue
        alias = field_json.get("alias")
        if alias and alias != name:
            layer.setFieldAlias(index, alias)
        domain = field_json.get("domain") or {}
        if domain.get("type") == "codedValue" and domain.get("codedValues"):
            value_map = [
                {str(item.get("name")): item.get("code")} for item in domain["codedValues"]
            ]
            layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup("ValueMap", {"map": value_map}))
        if str(name).lower() in read_only or field_json.get("editable") is False:
            form_config = layer.editFormConfig()
            form_config.setReadOnly(index, True)
            layer.setEditFormConfig(form_config)


def _record_fields(layer_json: dict) -> set[str]:
    """Lower-case names of the fields a field worker need not see: ObjectID, GlobalID and the
    editor-tracking fields."""
    names = {
        str(layer_json.get("objectIdField") or "").lower(),
        str(layer_json.get("globalIdField") or "").lower(),
    }
    edit_info = layer_json.get("editFieldsInfo") or {}
    names |= {str(value).lower() for value in edit_info.values() if isinstance(value, str)}
    names |= {
        str(f.get("name")).lower()
        for f in layer_json.get("fields") or ()
        if f.get("type") in ("esriFieldTypeOID", "esriFieldTypeGlobalID")
    }
    return names - {""}


def _arrange_form(
    layer: QgsVectorLayer, layer_json: dict, project: QgsProject, record: set[str] = frozenset()
) -> None:
    """A field-ready form: the fields to fill in first (aliases as labels), then the related
    rows and attachments, then the "Record" fields (ObjectID, GlobalID, attachment keys,
    editor tracking) read-only in a group at the end, collapsed where QGIS can (3.26+)."""
    record = set(record) | _record_fields(layer_json)
    config = layer.editFormConfig()
    config.setLayout(DRAG_AND_DROP)
    config.clearTabs()
    root = config.invisibleRootContainer()
    fields = layer.fields()
    kept = []
    for index in range(fields.count()):
        name = fields.at(index).name()
        if name.lower() in record:
            kept.append((name, index))
        elif name.lower() != "fid":
            root.addChildElement(QgsAttributeEditorField(name, index, root))
    for relation in project.relationManager().referencedRelations(layer):
        element = QgsAttributeEditorRelation(relation, root)
        # Attachments get the plugin's attachments editor (QGIS falls back to its own relation
        # editor while the plugin is not loaded); without a widget type QGIS 3.22 crashes.
        attachments = relation.referencingLayer().customProperty(PROPERTY_ATTACHMENTS)
        element.setRelationWidgetTypeId(
            "relation_editor" if attachments in (None, "") else ATTACHMENTS_WIDGET
        )
        element.setLabel(relation.name())
        root.addChildElement(element)
    if kept:
        group = QgsAttributeEditorContainer(tr("Record"), root)
        if hasattr(group, "setType"):
            group.setType(Qgis.AttributeEditorContainerType.GroupBox)
        else:
            group.setIsGroupBox(True)
        if hasattr(group, "setCollapsed"):
            group.setCollapsed(True)
        for name, index in kept:
            group.addChildElement(QgsAttributeEditorField(name, index, group))
            config.setReadOnly(index, True)
        root.addChildElement(group)
    layer.setEditFormConfig(config)


def _add_attachment_tables(
    offline_map: OfflineMap,
    entry: GeodatabaseEntry,
    definitions: dict[int, Any],
    result: LoadedGeodatabase,
    path: str,
    project: QgsProject,
) -> None:
    for layer_id, layer in list(result.layers.items()):
        definition = definitions[layer_id]
        if not definition.has_attachments:
            continue
        table = attachment_table_name(definition)
        attachments = QgsVectorLayer(
            f"{path}|layername={table}", tr("{0} attachments").format(layer.name()), "ogr"
        )
        if not attachments.isValid():
            continue
        _tag(attachments, offline_map.folder, entry.file, layer_id)
        attachments.setCustomProperty(PROPERTY_ATTACHMENTS, int(layer_id))
        _describe_attachments(attachments)
        data_index = attachments.fields().lookupField(ATTACHMENT_DATA_FIELD)
        if data_index >= 0:
            # QGIS's own file widget for BLOBs: embed a file, save it out, clear it.
            attachments.setEditorWidgetSetup(data_index, QgsEditorWidgetSetup("Binary", {}))
        project.addMapLayer(attachments, False)
        # Reachable, but not listed among the map's layers: a collapsed sub-group.
        node = _attachments_group(result.group).addLayer(attachments)
        node.setItemVisibilityChecked(False)
        result.attachment_layers[layer_id] = attachments
        parent_key = _global_id_field(definition.layer_json or {}, layer)
        child_key = _field_named(attachments, ATTACHMENT_PARENT_FIELD)
        if parent_key and child_key:
            relation = _relation(
                f"oms_{Path(entry.file).stem}_{layer_id}_attachments",
                tr("Attachments"),
                layer,
                parent_key,
                attachments,
                child_key,
                composition=True,
            )
            if relation is not None:
                project.relationManager().addRelation(relation)
                result.relations.append(relation)


def _describe_attachments(attachments: QgsVectorLayer) -> None:
    """Attachments read as attachments: listed by name, type and size; labelled fields."""
    for name, alias in (
        (ATTACHMENT_NAME_FIELD, tr("Name")),
        (ATTACHMENT_TYPE_FIELD, tr("Type")),
        (ATTACHMENT_SIZE_FIELD, tr("Size (bytes)")),
        (ATTACHMENT_DATA_FIELD, tr("File")),
    ):
        index = attachments.fields().lookupField(name)
        if index >= 0:
            attachments.setFieldAlias(index, alias)
    attachments.setDisplayExpression(
        "\"ATT_NAME\" || ' (' || coalesce(\"CONTENT_TYPE\", '?') || ', '"
        " || format_number(coalesce(\"DATA_SIZE\", 0) / 1024.0, 1) || ' KB)'"
    )


def _attachments_group(group: QgsLayerTreeGroup) -> QgsLayerTreeGroup:
    found = group.findGroup(tr("Attachments"))
    if found is None or found.parent() is not group:
        found = group.addGroup(tr("Attachments"))
        found.setExpanded(False)
        found.setItemVisibilityChecked(False)
    return found


def _add_relations(
    entry: GeodatabaseEntry,
    definitions: dict[int, Any],
    result: LoadedGeodatabase,
    project: QgsProject,
) -> None:
    """A QGIS relation for each relationship class whose two ends are both loaded."""
    for origin_id, origin_layer in result.layers.items():
        layer_json = definitions[origin_id].layer_json or {}
        for relationship in layer_json.get("relationships") or ():
            if relationship.get("role") != "esriRelRoleOrigin":
                continue
            destination_id = relationship.get("relatedTableId")
            destination_layer = result.layers.get(destination_id)
            if destination_layer is None:
                continue
            destination_json = definitions[destination_id].layer_json or {}
            foreign_key = next(
                (
                    other.get("keyField")
                    for other in destination_json.get("relationships") or ()
                    if other.get("id") == relationship.get("id")
                    and other.get("role") == "esriRelRoleDestination"
                ),
                None,
            )
            origin_key = _field_named(origin_layer, relationship.get("keyField"))
            foreign_key = _field_named(destination_layer, foreign_key)
            if not origin_key or not foreign_key:
                continue
            relation = _relation(
                f"oms_{Path(entry.file).stem}_{relationship.get('id')}",
                _relation_title(relationship, destination_layer),
                origin_layer,
                origin_key,
                destination_layer,
                foreign_key,
                composition=bool(relationship.get("composite")),
            )
            if relation is not None:
                project.relationManager().addRelation(relation)
                result.relations.append(relation)


def _relation_title(relationship: dict, related: QgsVectorLayer) -> str:
    """The related layer's title; the service's relationship name too when it is worded for
    people ("Inspections of the point"), not a table pair such as ``Points_Inspections``."""
    name = str(relationship.get("name") or "").strip()
    if not name or " " not in name or name == related.name():
        return related.name()
    return tr("{0} ({1})").format(name, related.name())


def _relation(
    relation_id: str,
    name: str,
    referenced: QgsVectorLayer,
    referenced_field: str,
    referencing: QgsVectorLayer,
    referencing_field: str,
    *,
    composition: bool = False,
) -> QgsRelation | None:
    relation = QgsRelation()
    relation.setId(relation_id)
    relation.setName(name)
    relation.setReferencedLayer(referenced.id())
    relation.setReferencingLayer(referencing.id())
    relation.addFieldPair(referencing_field, referenced_field)
    if composition:
        relation.setStrength(COMPOSITION)
    return relation if relation.isValid() else None


def _field_named(layer: QgsVectorLayer, name: str | None) -> str | None:
    """The layer's spelling of field ``name`` (GeoPackage names may differ in case)."""
    if not name:
        return None
    index = layer.fields().lookupField(name)
    return layer.fields().at(index).name() if index >= 0 else None


def _global_id_field(layer_json: dict, layer: QgsVectorLayer) -> str | None:
    name = layer_json.get("globalIdField")
    if not name:
        name = next(
            (
                f.get("name")
                for f in layer_json.get("fields") or ()
                if f.get("type") == "esriFieldTypeGlobalID"
            ),
            "GlobalID",
        )
    return _field_named(layer, name)


# The attachments table layout of the geodatabase (see plugin/core/geodatabase.py).
ATTACHMENT_PARENT_FIELD = "REL_GLOBALID"
ATTACHMENT_DATA_FIELD = "DATA"
ATTACHMENT_NAME_FIELD = "ATT_NAME"
ATTACHMENT_TYPE_FIELD = "CONTENT_TYPE"
ATTACHMENT_SIZE_FIELD = "DATA_SIZE"
#: The attachments table's keys: its ID, its GlobalID and its parent's GlobalID.
ATTACHMENT_KEY_FIELDS = frozenset(
    name.lower() for name in (schema.ATTACHMENT_FID, *schema.ATTACHMENT_COLUMNS[:2])
)


def attachment_table_name(definition: Any) -> str:
    """The attachments table of a layer: ``<table>__ATTACH``."""
    return getattr(definition, "attachment_table", None) or f"{definition.table_name}__ATTACH"


# -- finding, reloading, removing ------------------------------------------------------------
def offline_map_layers(
    folder: Path | str, project: QgsProject | None = None
) -> list[QgsVectorLayer]:
    """Every layer and table of ``project`` that this plugin loaded from the geodatabases of the
    offline map in ``folder`` (not its basemaps)."""
    return [layer for layer in _map_layers(folder, project) if isinstance(layer, QgsVectorLayer)]


def _map_layers(folder: Path | str, project: QgsProject | None = None) -> list[QgsMapLayer]:
    """Every layer of ``project`` that this plugin loaded for the map in ``folder``, basemaps
    included."""
    project = project or QgsProject.instance()
    key = _folder_key(Path(folder))
    return [
        layer
        for layer in project.mapLayers().values()
        if layer.customProperty(PROPERTY_FOLDER) == key
    ]


def layers_with_unsaved_edits(
    folder: Path | str, project: QgsProject | None = None, file: str | None = None
) -> list[QgsVectorLayer]:
    """The map's layers (of its geodatabase ``file`` only, if given) in edit mode with changes
    not yet saved to the geodatabase."""
    return [
        layer
        for layer in offline_map_layers(folder, project)
        if layer.isEditable()
        and layer.isModified()
        and (file is None or layer.customProperty(PROPERTY_FILE) == file)
    ]


def save_edits_before_sync(
    folder: Path | str, save: bool, project: QgsProject | None = None, file: str | None = None
) -> list[QgsVectorLayer]:
    """The rule of every door to a sync: edits not yet saved in QGIS are not in the
    geodatabase, so a sync would silently leave them out. With ``save`` they are saved (the
    layers stay in edit mode); without, OfflineMapSyncError names the layers. Returns the
    layers saved."""
    unsaved = layers_with_unsaved_edits(folder, project, file)
    names = ", ".join(layer.name() for layer in unsaved)
    if unsaved and not save:
        raise OfflineMapSyncError(
            tr("The sync did not start: save or discard the edits of {0} first.").format(names)
        )
    for layer in unsaved:
        if not layer.commitChanges(False):
            raise OfflineMapSyncError(
                tr("The edits of {0} could not be saved: {1}").format(
                    layer.name(), "; ".join(layer.commitErrors())
                )
            )
    return unsaved


def reload_offline_map_layers(folder: Path | str, project: QgsProject | None = None) -> int:
    """Re-read the map's layers from their geodatabases (after a sync) and repaint them."""
    layers = offline_map_layers(folder, project)
    for layer in layers:
        layer.reload()
        layer.updateExtents()
        layer.triggerRepaint()
    return len(layers)


def remove_offline_map_from_project(folder: Path | str, project: QgsProject | None = None) -> None:
    """Remove the layers (basemaps included), relations and groups this plugin added for the
    map in ``folder``."""
    project = project or QgsProject.instance()
    layers = _map_layers(folder, project)
    ids = {layer.id() for layer in layers}
    manager = project.relationManager()
    for relation_id, relation in list(manager.relations().items()):
        if relation.referencedLayerId() in ids or relation.referencingLayerId() in ids:
            manager.removeRelation(relation_id)
    if ids:
        project.removeMapLayers(list(ids))
    key = _folder_key(Path(folder))
    root = project.layerTreeRoot()
    groups = root.findGroups(True) if hasattr(root, "findGroups") else root.children()
    # Collected first: removing a group deletes its sub-groups, which the walk would reach.
    ours = [
        group
        for group in groups
        if isinstance(group, QgsLayerTreeGroup) and group.customProperty(GROUP_PROPERTY) == key
    ]
    for group in ours:
        parent = group.parent()
        if parent is not None:
            parent.removeChildNode(group)

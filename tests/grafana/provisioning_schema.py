"""JSON Schemas of Grafana's file-provisioning formats, written from Grafana's documentation
("Provision Grafana": data sources, dashboard providers; "Use configuration files to
provision alerting resources": rules, contact points, policies). Only what the docs state is
required or typed is enforced; unknown keys are allowed, as Grafana allows them.
"""
DURATION = {"type": "string", "pattern": r"^\d+(ms|s|m|h|d|w)$"}
REL = {"type": "object", "required": ["from", "to"], "properties": {"from": {"type": "integer", "minimum": 0},
                                                                   "to": {"type": "integer", "minimum": 0}}}

DATASOURCES = {
    "type": "object", "required": ["apiVersion", "datasources"],
    "properties": {
        "apiVersion": {"const": 1},
        "datasources": {"type": "array", "items": {
            "type": "object", "required": ["name", "type"],
            "properties": {"name": {"type": "string"}, "type": {"type": "string"}, "uid": {"type": "string", "maxLength": 40},
                           "access": {"enum": ["proxy", "direct"]}, "url": {"type": "string"},
                           "isDefault": {"type": "boolean"}, "editable": {"type": "boolean"},
                           "jsonData": {"type": "object"}, "secureJsonData": {"type": "object",
                                                                              "additionalProperties": {"type": "string"}}}}},
        "deleteDatasources": {"type": "array"},
    },
}

DASHBOARD_PROVIDERS = {
    "type": "object", "required": ["apiVersion", "providers"],
    "properties": {"apiVersion": {"const": 1}, "providers": {"type": "array", "items": {
        "type": "object", "required": ["name", "type", "options"],
        "properties": {"name": {"type": "string"}, "orgId": {"type": "integer"}, "folder": {"type": "string"},
                       "folderUid": {"type": "string"}, "type": {"const": "file"},
                       "disableDeletion": {"type": "boolean"}, "allowUiUpdates": {"type": "boolean"},
                       "updateIntervalSeconds": {"type": "integer"},
                       "options": {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}}}}},
}

QUERY = {"type": "object", "required": ["refId", "datasourceUid", "model"],
         "properties": {"refId": {"type": "string"}, "datasourceUid": {"type": "string"},
                        "relativeTimeRange": REL, "model": {"type": "object", "required": ["refId"]}}}
ALERT_RULES = {
    "type": "object", "required": ["apiVersion", "groups"],
    "properties": {"apiVersion": {"const": 1}, "groups": {"type": "array", "items": {
        "type": "object", "required": ["orgId", "name", "folder", "interval", "rules"],
        "properties": {"orgId": {"type": "integer"}, "name": {"type": "string"}, "folder": {"type": "string"},
                       "interval": DURATION, "rules": {"type": "array", "items": {
                           "type": "object", "required": ["uid", "title", "condition", "data"],
                           "properties": {
                               "uid": {"type": "string", "maxLength": 40, "pattern": "^[a-zA-Z0-9_-]+$"},
                               "title": {"type": "string"}, "condition": {"type": "string"},
                               "data": {"type": "array", "minItems": 1, "items": QUERY},
                               "noDataState": {"enum": ["Alerting", "NoData", "OK"]},
                               "execErrState": {"enum": ["Alerting", "Error", "OK"]},
                               "for": DURATION, "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                               "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                               "isPaused": {"type": "boolean"}}}}}}}},
}

CONTACT_POINTS = {
    "type": "object", "required": ["apiVersion", "contactPoints"],
    "properties": {"apiVersion": {"const": 1}, "contactPoints": {"type": "array", "items": {
        "type": "object", "required": ["orgId", "name", "receivers"],
        "properties": {"orgId": {"type": "integer"}, "name": {"type": "string"}, "receivers": {
            "type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["uid", "type", "settings"],
                "properties": {"uid": {"type": "string", "maxLength": 40}, "type": {"type": "string"},
                               "settings": {"type": "object"}, "disableResolveMessage": {"type": "boolean"}}}}}}}},
}

ROUTE = {"type": "object", "properties": {
    "receiver": {"type": "string"}, "group_by": {"type": "array", "items": {"type": "string"}},
    "object_matchers": {"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3,
                                                   "items": {"type": "string"}}},
    "continue": {"type": "boolean"}, "group_wait": DURATION, "group_interval": DURATION, "repeat_interval": DURATION,
    "routes": {"type": "array", "items": {"$ref": "#/$defs/route"}}}}
POLICIES = {
    "$defs": {"route": ROUTE},
    "type": "object", "required": ["apiVersion", "policies"],
    "properties": {"apiVersion": {"const": 1}, "policies": {"type": "array", "items": {
        "allOf": [{"$ref": "#/$defs/route"}, {"type": "object", "required": ["orgId", "receiver"]}]}}},
}

BY_PATH = {"datasources/aipulse.yaml": DATASOURCES, "dashboards/aipulse.yaml": DASHBOARD_PROVIDERS,
           "alerting/rules.yaml": ALERT_RULES, "alerting/contact-points.yaml": CONTACT_POINTS,
           "alerting/policies.yaml": POLICIES}

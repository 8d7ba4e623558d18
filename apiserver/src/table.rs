//! Server-side printing: `meta.k8s.io/v1` Table responses with upstream's
//! columns per kind (from `apimachinery::printers`) and CRDs'
//! additionalPrinterColumns.

use apimachinery::printers;
use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::request::Query;

/// A Table of `objects`; `list_meta` for lists.
pub fn table(rt: &ResourceType, objects: &[Value], list_meta: Option<Value>, q: &Query) -> Value {
    let now = jiff::Timestamp::now();
    let include = q.get("includeObject").unwrap_or("Metadata");
    let (columns, rows): (Value, Vec<Vec<Value>>) = match &rt.printer_columns {
        Some(cols) if rt.is_custom() => {
            let defs = printers::custom_columns(cols);
            let rows = objects.iter().map(|o| printers::custom_cells(&defs, o, now)).collect();
            (serde_json::to_value(&defs).unwrap_or(json!([])), rows)
        }
        _ => {
            let defs = printers::columns(&rt.group, &rt.kind);
            let rows = objects
                .iter()
                .map(|o| printers::cells(&rt.group, &rt.kind, o, now))
                .collect();
            (serde_json::to_value(&defs).unwrap_or(json!([])), rows)
        }
    };
    let rows: Vec<Value> = objects
        .iter()
        .zip(rows)
        .map(|(o, cells)| {
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => crate::rest::partial_metadata(o),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

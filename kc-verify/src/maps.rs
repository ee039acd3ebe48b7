//! The maps' BTF definitions (`.maps`): type, sizes and value layout, as libbpf reads them
//! (`int (*type)[N]` for integers, `key`/`value` as pointers to their types).

use serde::Serialize;

use crate::btf::{Btf, Kind};

/// One map as its BTF definition declares it; None where the definition does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapDef {
    pub name: String,
    pub map_type: Option<u32>,
    pub max_entries: Option<u32>,
    pub key_size: Option<u32>,
    pub value_size: Option<u32>,
    /// The value's C type, where given as a type; a stream's (ring buffer's) record type, from
    /// its `kc_record:` tag.
    pub value_type: Option<String>,
    /// The value (or record) struct's fields, in order.
    pub value_fields: Vec<String>,
}

/// A stream map's declaration tag naming its records' struct (includes/kc_bpf.h).
const RECORD_TAG: &str = "kc_record:";

/// Every map of the `.maps` DATASEC, in order.
pub fn map_defs(btf: &Btf) -> Vec<MapDef> {
    let Some(sec) = btf.datasec(".maps") else {
        return Vec::new();
    };
    sec.members
        .iter()
        .filter_map(|&(var_id, _)| {
            let var = btf.get(var_id).filter(|v| v.kind == Kind::Var)?;
            let (_, def) = btf
                .resolve(var.size_or_type)
                .filter(|(_, t)| t.kind == Kind::Struct)?;
            let mut m = MapDef {
                name: btf.name(var).to_string(),
                ..MapDef::default()
            };
            for (i, &member) in def.refs.iter().enumerate() {
                let field = def
                    .member_names
                    .get(i)
                    .and_then(|&n| btf.string(n))
                    .unwrap_or("");
                let Some((_, ptr)) = btf.resolve(member).filter(|(_, t)| t.kind == Kind::Ptr)
                else {
                    continue;
                };
                let pointee = ptr.size_or_type;
                let count = || {
                    btf.resolve(pointee)
                        .filter(|(_, t)| t.kind == Kind::Array)
                        .map(|(_, t)| t.nelems)
                };
                match field {
                    "type" => m.map_type = count(),
                    "max_entries" => m.max_entries = count(),
                    "key_size" => m.key_size = count(),
                    "value_size" => m.value_size = count(),
                    "key" => m.key_size = btf.size_of(pointee),
                    "value" => {
                        m.value_size = btf.size_of(pointee);
                        m.value_type = Some(btf.type_name(pointee));
                        m.value_fields = struct_fields(btf, pointee);
                    }
                    _ => {}
                }
            }
            if let Some(record) = record_of(btf, var_id) {
                m.value_fields = btf
                    .struct_id(&record)
                    .map(|id| struct_fields(btf, id))
                    .unwrap_or_default();
                m.value_type = Some(format!("struct {record}"));
            }
            Some(m)
        })
        .collect()
}

/// The struct a map variable's `kc_record:` tag names.
fn record_of(btf: &Btf, var_id: u32) -> Option<String> {
    btf.types
        .iter()
        .filter(|t| t.kind == Kind::DeclTag && t.refs.first() == Some(&var_id))
        .filter(|t| t.component_idx == -1)
        .find_map(|t| btf.name(t).strip_prefix(RECORD_TAG))
        .map(str::to_string)
}

/// The member names of struct (or union) `id`; empty for other types.
fn struct_fields(btf: &Btf, id: u32) -> Vec<String> {
    btf.resolve(id)
        .filter(|(_, t)| matches!(t.kind, Kind::Struct | Kind::Union))
        .map(|(_, t)| {
            t.member_names
                .iter()
                .map(|&n| btf.string(n).unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

//! Each counter's source (`includes/kc_collectors.h`): the BTF declaration tags on the members
//! of a collector's counter struct name the events that feed it. kc-loader reports a counter
//! unobserved when no family observed those events; a counter without a source, or naming an
//! event its object has no program for, would be a number nobody can vouch for.

use crate::btf::{Btf, Kind};

const EVENT_TAG: &str = "kc_event:";
const UNOBSERVED_TAG: &str = "kc_unobserved:";

/// A counter of an object's counter struct and its source tags (`kc_event:...`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CounterSource {
    pub name: String,
    pub tags: Vec<String>,
}

impl CounterSource {
    /// Its object says it does not observe it (a `p` object's return-only counters).
    fn unobserved(&self) -> bool {
        self.tags.iter().any(|t| t.starts_with(UNOBSERVED_TAG))
    }
}

/// An object's counter struct: its name and its members with their tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterStruct {
    pub name: String,
    pub counters: Vec<CounterSource>,
}

/// The counter struct `<collector>_counters` holds, by name, and its members' tags.
pub fn counters(btf: &Btf, collector: &str) -> Result<CounterStruct, String> {
    let Some(set) = counter_set(btf, collector) else {
        return Err(format!(
            "map {collector}_counters holds no struct kc_<set>_counters: kc-loader reads counter names from it"
        ));
    };
    let name = format!("kc_{set}_counters");
    let Some((id, t)) = btf
        .types
        .iter()
        .enumerate()
        .find(|(_, t)| t.kind == Kind::Struct && btf.name(t) == name)
    else {
        return Err(format!("no struct {name} in the BTF"));
    };
    let id = id as u32 + 1;
    let tags: Vec<(i32, &str)> = btf
        .types
        .iter()
        .filter(|t| t.kind == Kind::DeclTag && t.refs.first() == Some(&id))
        .map(|t| (t.component_idx, btf.name(t)))
        .collect();
    let counters = t
        .member_names
        .iter()
        .enumerate()
        .map(|(i, off)| CounterSource {
            name: btf.string(*off).unwrap_or("?").to_string(),
            tags: tags
                .iter()
                .filter(|(c, _)| *c == i as i32)
                .map(|(_, t)| t.to_string())
                .collect(),
        })
        .collect();
    Ok(CounterStruct { name, counters })
}

/// Whether this object observes none of its counters by its own tags: an object built with
/// nothing to observe (an entry-only object of a collector whose events need return mode or
/// another architecture), which kc-loader reports as such rather than as zeros.
pub fn observes_nothing(s: &CounterStruct) -> bool {
    !s.counters.is_empty() && s.counters.iter().all(CounterSource::unobserved)
}

/// What is wrong with the counter struct of an object whose counters map is
/// `<collector>_counters` and whose programs observe `events` (`kc_<collector>_<event>`).
pub fn problems(s: &CounterStruct, collector: &str, events: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in &s.counters {
        let sources: Vec<&str> = c
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix(EVENT_TAG))
            .collect();
        if sources.is_empty() {
            problems.push(format!(
                "counter {} of {} names no event: give it KC_FROM(event) in includes/kc_collectors.h",
                c.name, s.name
            ));
        }
        // A counter its object says it does not observe may name events it has no program for.
        if c.unobserved() {
            continue;
        }
        for event in sources {
            let full = format!("kc_{collector}_{event}");
            if !events.contains(&full) {
                problems.push(format!(
                    "counter {} of {} is fed by {full}, which has no program in this object",
                    c.name, s.name
                ));
            }
        }
    }
    problems
}

/// The counter set a collector's `<collector>_counters` map holds, when its struct is shared
/// (hardirq and softirq hold `kc_irq_counters`): the struct of the map's value.
fn counter_set<'a>(btf: &'a Btf, collector: &str) -> Option<&'a str> {
    let map = format!("{collector}_counters");
    let var = btf
        .types
        .iter()
        .find(|t| t.kind == Kind::Var && btf.name(t) == map)?;
    // VAR -> the map's anonymous struct -> its `value` member -> a pointer -> the struct.
    let def = btf.get(*var.refs.first()?)?;
    let at = def
        .member_names
        .iter()
        .position(|n| btf.string(*n) == Some("value"))?;
    let ptr = btf.get(*def.refs.get(at)?)?;
    let value = btf.get(*ptr.refs.first()?)?;
    btf.name(value)
        .strip_prefix("kc_")?
        .strip_suffix("_counters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::tests::build;

    /// `struct kc_vfs_counters { __u64 read; __u64 read_error; }` in map vfs_counters, with
    /// `tags` (member index, text) as DECL_TAGs on it.
    fn counters(tags: &[(u32, &str)]) -> Vec<u8> {
        let mut strings =
            b"\0u64\0kc_vfs_counters\0read\0read_error\0value\0vfs_counters\0".to_vec();
        let at = |s: &[u8], needle: &str| {
            s.windows(needle.len() + 2)
                .position(|w| {
                    w[0] == 0
                        && &w[1..=needle.len()] == needle.as_bytes()
                        && w[needle.len() + 1] == 0
                })
                .unwrap() as u32
                + 1
        };
        let (u64_, st, read, err, value, var) = (
            at(&strings, "u64"),
            at(&strings, "kc_vfs_counters"),
            at(&strings, "read"),
            at(&strings, "read_error"),
            at(&strings, "value"),
            at(&strings, "vfs_counters"),
        );
        let mut offs = Vec::new();
        for (_, text) in tags {
            offs.push(strings.len() as u32);
            strings.extend(text.as_bytes());
            strings.push(0);
        }
        let members = [read, 1, 0, err, 1, 64];
        let def = [value, 3, 0];
        let idx: Vec<[u32; 1]> = tags.iter().map(|(i, _)| [*i]).collect();
        let mut types: Vec<crate::btf::tests::Record> = vec![
            (u64_, 1, 0, false, 8, &[64]),   // [1] u64
            (st, 4, 2, false, 16, &members), // [2] struct kc_vfs_counters
            (0, 2, 0, false, 2, &[]),        // [3] ptr -> [2]
            (0, 4, 1, false, 8, &def),       // [4] struct { [3] *value; }
            (var, 14, 0, false, 4, &[1]),    // [5] var vfs_counters
        ];
        for (k, off) in offs.iter().enumerate() {
            types.push((*off, 17, 0, false, 2, &idx[k]));
        }
        build(&strings, &types)
    }

    fn check(tags: &[(u32, &str)], events: &[&str]) -> Vec<String> {
        let data = counters(tags);
        let btf = Btf::parse(&data).unwrap();
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        super::counters(&btf, "vfs").map_or_else(|e| vec![e], |s| problems(&s, "vfs", &events))
    }

    #[test]
    fn every_counter_names_an_event_the_object_has() {
        let fine = [(0, "kc_event:read"), (1, "kc_event:read")];
        assert!(check(&fine, &["kc_vfs_read"]).is_empty());
        assert_eq!(
            check(&[(0, "kc_event:read")], &["kc_vfs_read"]),
            ["counter read_error of kc_vfs_counters names no event: give it KC_FROM(event) in includes/kc_collectors.h"]
        );
        assert_eq!(
            check(&[(0, "kc_event:read"), (1, "kc_event:raed")], &["kc_vfs_read"]),
            ["counter read_error of kc_vfs_counters is fed by kc_vfs_raed, which has no program in this object"]
        );
        // The struct of a shared set (hardirq and softirq's kc_irq_counters) is the map's.
        let data = counters(&fine);
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(
            super::counters(&btf, "hardirq").unwrap_err(),
            "map hardirq_counters holds no struct kc_<set>_counters: kc-loader reads counter names from it"
        );
        // A p object's return-only counter may name an event it has no program for.
        let p = [
            (0, "kc_event:read"),
            (1, "kc_event:clone"),
            (1, "kc_unobserved:entry-only"),
        ];
        assert!(check(&p, &["kc_vfs_read"]).is_empty());
    }
}

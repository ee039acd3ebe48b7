//! Pass 1: each type record's metadata, as the kernel's per-kind `check_meta`.

use super::*;

impl Env<'_> {
    pub(super) fn check_all_metas(&mut self) -> Result<(), Finding> {
        let mut cur = 0usize;
        while cur < self.data.len() {
            let id = self.count();
            if id > MAX_TYPE {
                return Err(header_finding("Exceeded max num of types"));
            }
            let left = self.data.len() - cur;
            if left < 12 {
                return Err(header_finding(format!(
                    "[{id}] meta_left:{left} meta_needed:12"
                )));
            }
            self.at.push(cur);
            let info = self.info(id);
            if info & !INFO_MASK != 0 {
                return Err(self.finding(id, format!("Invalid btf_info:{info:x}")));
            }
            let kind = self.kind(id).unwrap_or(0);
            if kind == 0 || kind > KIND_MAX {
                return Err(self.finding(id, format!("Invalid kind:{kind}")));
            }
            if !self.name_offset_valid(self.name_off(id)) {
                return Err(self.finding(id, format!("Invalid name_offset:{}", self.name_off(id))));
            }
            let extra = self.check_meta(id, kind, left - 12)?;
            cur += 12 + extra;
        }
        let n = self.at.len();
        self.visit = vec![Visit::NotVisited; n];
        self.resolved_ids = vec![0; n];
        self.resolved_sizes = vec![0; n];
        Ok(())
    }

    /// One kind's metadata rules; returns how many bytes follow the record head.
    fn check_meta(&self, id: u32, kind: u8, left: usize) -> Result<usize, Finding> {
        let bad = |rule: &str| Err(self.finding(id, rule));
        let vlen = self.vlen(id) as usize;
        let need = |n: usize| -> Result<usize, Finding> {
            if left < n {
                Err(self.finding(id, format!("meta_left:{left} meta_needed:{n}")))
            } else {
                Ok(n)
            }
        };
        let (st, kflag, name) = (self.size_or_type(id), self.kflag(id), self.name_off(id));
        match kind {
            INT => {
                let n = need(4)?;
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                let data = self.extra(id, 0);
                if data & !INT_MASK != 0 {
                    return bad(&format!("Invalid int_data:{data:x}"));
                }
                let bits = (data & 0xff) + ((data >> 16) & 0xff);
                if bits > 128 {
                    return bad("nr_bits exceeds 128");
                }
                if bits.div_ceil(8) > st {
                    return bad("nr_bits exceeds type_size");
                }
                let encoding = (data >> 24) & 0x0f;
                if encoding != 0 && ![1, 2, 4].contains(&encoding) {
                    return bad("Unsupported encoding");
                }
                Ok(n)
            }
            PTR | TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => {
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                // Since 6.13 a type tag may carry kflag (an attribute, not a type tag).
                if kflag && kind != TYPE_TAG {
                    return bad("Invalid btf_info kind_flag");
                }
                if st > MAX_TYPE {
                    return bad("Invalid type_id");
                }
                let named = match kind {
                    TYPEDEF => name != 0 && self.identifier(name),
                    TYPE_TAG => self.string(name).is_some_and(|s| !s.is_empty()),
                    _ => name == 0,
                };
                if !named {
                    return bad("Invalid name");
                }
                Ok(0)
            }
            FWD => {
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                if st != 0 {
                    return bad("type != 0");
                }
                if name == 0 || !self.identifier(name) {
                    return bad("Invalid name");
                }
                Ok(0)
            }
            ARRAY => {
                let n = need(12)?;
                if name != 0 {
                    return bad("Invalid name");
                }
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                if st != 0 {
                    return bad("size != 0");
                }
                let (elem, index) = (self.extra(id, 0), self.extra(id, 1));
                if elem == 0 || elem > MAX_TYPE {
                    return bad("Invalid elem");
                }
                if index == 0 || index > MAX_TYPE {
                    return bad("Invalid index");
                }
                Ok(n)
            }
            STRUCT | UNION => {
                let n = need(vlen * 12)?;
                if name != 0 && !self.identifier(name) {
                    return bad("Invalid name");
                }
                let mut last = 0u32;
                for i in 0..vlen {
                    let (m_name, m_type, m_off) = (
                        self.extra(id, 3 * i),
                        self.extra(id, 3 * i + 1),
                        self.extra(id, 3 * i + 2),
                    );
                    let member = |rule: &str| Err(self.finding(id, format!("member #{i}: {rule}")));
                    if !self.name_offset_valid(m_name) {
                        return member(&format!("Invalid member name_offset:{m_name}"));
                    }
                    if m_name != 0 && !self.identifier(m_name) {
                        return member("Invalid name");
                    }
                    if m_type == 0 || m_type > MAX_TYPE {
                        return member("Invalid type_id");
                    }
                    let off = if kflag { m_off & 0x00ff_ffff } else { m_off };
                    if (kind == UNION && off != 0) || last > off {
                        return member("Invalid member bits_offset");
                    }
                    if off.div_ceil(8) > st {
                        return member("Member bits_offset exceeds its struct size");
                    }
                    last = off;
                }
                Ok(n)
            }
            ENUM | ENUM64 => {
                let per = if kind == ENUM { 8 } else { 12 };
                let n = need(vlen * per)?;
                if st > 8 || !st.is_power_of_two() {
                    return bad("Unexpected size");
                }
                if name != 0 && !self.identifier(name) {
                    return bad("Invalid name");
                }
                for i in 0..vlen {
                    let e_name = self.extra(id, i * per / 4);
                    if !self.name_offset_valid(e_name) {
                        return bad(&format!("Invalid name_offset:{e_name}"));
                    }
                    if e_name == 0 || !self.identifier(e_name) {
                        return bad("Invalid name");
                    }
                }
                Ok(n)
            }
            FUNC_PROTO => {
                let n = need(vlen * 8)?;
                if name != 0 {
                    return bad("Invalid name");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                Ok(n)
            }
            FUNC => {
                if name == 0 || !self.identifier(name) {
                    return bad("Invalid name");
                }
                // static (0) or global (1); extern functions never reach the kernel.
                if vlen > 1 {
                    return bad("Invalid func linkage");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                Ok(0)
            }
            VAR => {
                let n = need(4)?;
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                if name == 0 || !self.name_valid(name, true) {
                    return bad("Invalid name");
                }
                if st == 0 || st > MAX_TYPE {
                    return bad("Invalid type_id");
                }
                if self.extra(id, 0) > 1 {
                    return bad("Linkage not supported");
                }
                Ok(n)
            }
            DATASEC => {
                let n = need(vlen * 12)?;
                if st == 0 {
                    return bad("size == 0");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                if name == 0 || !self.section_name(name) {
                    return bad("Invalid name");
                }
                let (mut last_end, mut sum) = (0u64, 0u64);
                for i in 0..vlen {
                    let (v_type, v_off, v_size) = (
                        self.extra(id, 3 * i),
                        self.extra(id, 3 * i + 1),
                        self.extra(id, 3 * i + 2),
                    );
                    let entry = |rule: &str| {
                        Err(self.finding(
                            id,
                            format!(
                                "entry #{i} (type {v_type} offset {v_off} size {v_size}): {rule}"
                            ),
                        ))
                    };
                    if v_type == 0 || v_type > MAX_TYPE {
                        return entry("Invalid type_id");
                    }
                    if (v_off as u64) < last_end || v_off >= st {
                        return entry("Invalid offset");
                    }
                    if v_size == 0 || v_size > st {
                        return entry("Invalid size");
                    }
                    last_end = v_off as u64 + v_size as u64;
                    if last_end > st as u64 {
                        return entry("Invalid offset+size");
                    }
                    sum += v_size as u64;
                }
                if (st as u64) < sum {
                    return bad("Invalid btf_info size");
                }
                Ok(n)
            }
            FLOAT => {
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                if kflag {
                    return bad("Invalid btf_info kind_flag");
                }
                if ![2, 4, 8, 12, 16].contains(&st) {
                    return bad("Invalid type_size");
                }
                Ok(0)
            }
            DECL_TAG => {
                let n = need(4)?;
                if self.string(name).is_none_or(|s| s.is_empty()) {
                    return bad("Invalid value");
                }
                if vlen != 0 {
                    return bad("vlen != 0");
                }
                // kflag marks an attribute (6.13+).
                if (self.extra(id, 0) as i32) < -1 {
                    return bad("Invalid component_idx");
                }
                Ok(n)
            }
            _ => unreachable!("kinds are checked before"),
        }
    }
}

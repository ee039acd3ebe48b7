//! Pass 2: type resolution as the kernel walks it (`btf_resolve` and each kind's `resolve`),
//! member placement (`check_member`), FUNC_PROTO arguments, and the type-tag ordering.

use super::*;

fn is_modifier(k: u8) -> bool {
    matches!(k, TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG)
}
fn is_struct(k: u8) -> bool {
    matches!(k, STRUCT | UNION)
}
/// Types without a size: void, FWD, FUNC, FUNC_PROTO.
fn no_size(k: u8) -> bool {
    matches!(k, 0 | FWD | FUNC | FUNC_PROTO)
}
fn has_size(k: u8) -> bool {
    matches!(k, INT | STRUCT | UNION | ENUM | DATASEC | FLOAT | ENUM64)
}
fn needs_resolve(k: u8) -> bool {
    is_modifier(k)
        || matches!(
            k,
            PTR | STRUCT | UNION | ARRAY | VAR | FUNC | DECL_TAG | DATASEC
        )
}
/// Kinds that may only start a resolution, never be reached by one.
fn source_only(k: u8) -> bool {
    matches!(k, VAR | DECL_TAG | DATASEC)
}

type Step = Result<(), Stop>;

impl Env<'_> {
    fn sink(&self, k: u8) -> bool {
        match self.mode {
            Mode::Tbd => !needs_resolve(k),
            Mode::Ptr => !is_modifier(k) && k != PTR,
            Mode::StructOrArray => !is_modifier(k) && k != ARRAY && !is_struct(k),
        }
    }
    fn resolved(&self, id: u32) -> bool {
        self.visit.get(id as usize) == Some(&Visit::Resolved)
    }
    fn push(&mut self, id: u32) -> Step {
        if self.stack.len() == MAX_RESOLVE_DEPTH {
            return Err(Stop::Depth);
        }
        if self.visit[id as usize] != Visit::NotVisited {
            return Err(Stop::Loop);
        }
        self.visit[id as usize] = Visit::Visited;
        self.stack.push(Vertex { id, next_member: 0 });
        let k = self.kind(id).unwrap_or(0);
        if self.mode == Mode::Tbd {
            if k == PTR {
                self.mode = Mode::Ptr;
            } else if is_struct(k) || k == ARRAY {
                self.mode = Mode::StructOrArray;
            }
        }
        Ok(())
    }
    fn pop_resolved(&mut self, resolved_id: u32, size: u32) {
        let v = self.stack.pop().expect("a vertex is being resolved");
        self.resolved_ids[v.id as usize] = resolved_id;
        self.resolved_sizes[v.id as usize] = size;
        self.visit[v.id as usize] = Visit::Resolved;
    }
    fn set_next_member(&mut self, next: u16) {
        self.stack
            .last_mut()
            .expect("a vertex is being resolved")
            .next_member = next;
    }

    /// The type that gives `id` its size, and that size (`btf_type_id_size`).
    fn id_size(&self, id: u32) -> Option<(u32, u32)> {
        let size_of = |id: u32, k: u8| -> Option<u32> {
            if has_size(k) {
                Some(self.size_or_type(id))
            } else if k == ARRAY {
                Some(self.resolved_sizes[id as usize])
            } else if k == PTR {
                Some(PTR_SIZE)
            } else {
                None
            }
        };
        let k = self.kind(id)?;
        if no_size(k) {
            return None;
        }
        if let Some(size) = size_of(id, k) {
            return Some((id, size));
        }
        if !is_modifier(k) && k != VAR {
            return None;
        }
        let rid = self.resolved_ids[id as usize];
        let rk = self.kind(rid)?;
        if no_size(rk) {
            return None;
        }
        size_of(rid, rk).map(|s| (rid, s))
    }
    fn int_regular(&self, id: u32) -> bool {
        let data = self.extra(id, 0);
        let bits = data & 0xff;
        bits.is_multiple_of(8)
            && (data >> 16) & 0xff == 0
            && [1, 2, 4, 8, 16].contains(&bits.div_ceil(8))
    }

    pub(super) fn check_all_types(&mut self) -> Result<(), Finding> {
        for id in 1..self.count() {
            let k = self.kind(id).unwrap_or(0);
            if needs_resolve(k) && !self.resolved(id) {
                self.resolve(id)?;
            }
            if k == FUNC_PROTO {
                self.func_proto_check(id)?;
            }
        }
        Ok(())
    }

    fn resolve(&mut self, id: u32) -> Result<(), Finding> {
        self.mode = Mode::Tbd;
        self.stack.clear();
        let mut step = self.push(id);
        while step.is_ok() {
            let Some(v) = self.stack.last() else { break };
            let (vid, next) = (v.id, v.next_member);
            step = match self.kind(vid).unwrap_or(0) {
                k if is_modifier(k) => self.resolve_ref(vid, false),
                PTR => self.resolve_ref(vid, true),
                VAR => self.resolve_var(vid),
                ARRAY => self.resolve_array(vid),
                STRUCT | UNION => self.resolve_struct(vid, next),
                DATASEC => self.resolve_datasec(vid, next),
                FUNC => self.resolve_func(vid),
                DECL_TAG => self.resolve_decl_tag(vid),
                _ => Err(self.finding(vid, "Unsupported resolve").into()),
            };
        }
        match step {
            Err(Stop::Depth) => Err(self.finding(
                id,
                format!("Exceeded max resolving depth:{MAX_RESOLVE_DEPTH}"),
            )),
            Err(Stop::Loop) => Err(self.finding(id, "Loop detected")),
            Err(Stop::Rule(f)) => Err(f),
            Ok(()) if !self.resolve_valid(id) => Err(self.finding(id, "Invalid resolve state")),
            Ok(()) => Ok(()),
        }
    }

    /// The next type of a modifier, PTR or VAR: it must exist and not be a VAR, DECL_TAG or
    /// DATASEC; `Ok(None)` when it was pushed to be resolved first.
    fn next_of(&mut self, id: u32) -> Result<Option<(u32, u8)>, Stop> {
        let next = self.size_or_type(id);
        match self.kind(next) {
            Some(k) if !source_only(k) => {
                if !self.sink(k) && !self.resolved(next) {
                    self.push(next)?;
                    return Ok(None);
                }
                Ok(Some((next, k)))
            }
            _ => Err(self.finding(id, "Invalid type_id").into()),
        }
    }

    /// A modifier or VAR that was resolved to a PTR in a struct/array walk may have stopped
    /// there: go on from that PTR, so it cannot lead back here. `true` when pushed.
    fn continue_past_ptr(&mut self, k: u8, next: u32) -> Result<bool, Stop> {
        if is_modifier(k) {
            let rid = self.resolved_ids[next as usize];
            let rk = self.kind(rid).unwrap_or(0);
            if rk == PTR && !self.sink(rk) && !self.resolved(rid) {
                self.push(rid)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Modifiers and PTR: they may end at void, a FWD or a FUNC_PROTO.
    fn resolve_ref(&mut self, id: u32, ptr: bool) -> Step {
        let Some((mut next, mut k)) = self.next_of(id)? else {
            return Ok(());
        };
        if ptr && self.continue_past_ptr(k, next)? {
            return Ok(());
        }
        match self.id_size(next) {
            Some((sized, _)) => next = sized,
            None => {
                if self.resolved(next) {
                    next = self.resolved_ids[next as usize];
                    k = self.kind(next).unwrap_or(u8::MAX);
                }
                if !matches!(k, 0 | FWD | FUNC_PROTO) {
                    return Err(self.finding(id, "Invalid type_id").into());
                }
            }
        }
        self.pop_resolved(next, 0);
        Ok(())
    }

    /// A VAR must end at something with a size.
    fn resolve_var(&mut self, id: u32) -> Step {
        let Some((next, k)) = self.next_of(id)? else {
            return Ok(());
        };
        if self.continue_past_ptr(k, next)? {
            return Ok(());
        }
        let Some((sized, _)) = self.id_size(next) else {
            return Err(self.finding(id, "Invalid type_id").into());
        };
        self.pop_resolved(sized, 0);
        Ok(())
    }

    fn resolve_array(&mut self, id: u32) -> Step {
        let (elem, index, nelems) = (self.extra(id, 0), self.extra(id, 1), self.extra(id, 2));
        let bad = |rule: &str| Err(Stop::Rule(self.finding(id, rule)));
        let ik = match self.kind(index) {
            Some(k) if !no_size(k) && !source_only(k) => k,
            _ => return bad("Invalid index"),
        };
        if !self.sink(ik) && !self.resolved(index) {
            return self.push(index);
        }
        match self.id_size(index) {
            Some((i, _)) if self.kind(i) == Some(INT) && self.int_regular(i) => {}
            _ => return bad("Invalid index"),
        }
        let ek = match self.kind(elem) {
            Some(k) if !no_size(k) && !source_only(k) => k,
            _ => return bad("Invalid elem"),
        };
        if !self.sink(ek) && !self.resolved(elem) {
            return self.push(elem);
        }
        let Some((e, size)) = self.id_size(elem) else {
            return bad("Invalid elem");
        };
        if self.kind(e) == Some(INT) && !self.int_regular(e) {
            return bad("Invalid array of int");
        }
        if nelems != 0 && size > u32::MAX / nelems {
            return bad("Array size overflows U32_MAX");
        }
        self.pop_resolved(e, size.wrapping_mul(nelems));
        Ok(())
    }

    fn member(&self, id: u32, i: usize) -> (u32, u32) {
        (self.extra(id, 3 * i + 1), self.extra(id, 3 * i + 2))
    }

    fn resolve_struct(&mut self, id: u32, next_member: u16) -> Step {
        // The member pushed last time is resolved now: check where it sits.
        if next_member > 0 {
            let (m_type, m_off) = self.member(id, next_member as usize - 1);
            // The kernel keeps this id in a u16.
            let m_type = m_type as u16 as u32;
            if !self.resolved(m_type) {
                return Err(self.finding(id, "Invalid member").into());
            }
            self.check_member(id, next_member as usize - 1, m_type, m_off)?;
        }
        for i in next_member as usize..self.vlen(id) as usize {
            let (m_type, m_off) = self.member(id, i);
            let mk = match self.kind(m_type) {
                Some(k) if !no_size(k) && !source_only(k) => k,
                _ => {
                    return Err(self
                        .finding(id, format!("member #{i}: Invalid member"))
                        .into())
                }
            };
            if !self.sink(mk) && !self.resolved(m_type) {
                self.set_next_member(i as u16 + 1);
                return self.push(m_type);
            }
            self.check_member(id, i, m_type, m_off)?;
        }
        self.pop_resolved(0, 0);
        Ok(())
    }

    fn resolve_datasec(&mut self, id: u32, next_member: u16) -> Step {
        for i in next_member as usize..self.vlen(id) as usize {
            let (var, size) = (self.extra(id, 3 * i), self.extra(id, 3 * i + 2));
            let entry = |rule: &str| {
                Stop::Rule(self.finding(id, format!("entry #{i} (type {var}): {rule}")))
            };
            if self.kind(var) != Some(VAR) {
                return Err(entry("Not a VAR kind member"));
            }
            if !self.sink(VAR) && !self.resolved(var) {
                self.set_next_member(i as u16 + 1);
                return self.push(var);
            }
            match self.id_size(self.size_or_type(var)) {
                None => return Err(entry("Invalid type")),
                Some((_, type_size)) if size < type_size => return Err(entry("Invalid size")),
                Some(_) => {}
            }
        }
        self.pop_resolved(0, 0);
        Ok(())
    }

    /// A FUNC's type is a FUNC_PROTO whose every typed argument has a name.
    fn resolve_func(&mut self, id: u32) -> Step {
        let proto = self.size_or_type(id);
        if self.kind(proto) != Some(FUNC_PROTO) {
            return Err(self.finding(id, "Invalid type_id").into());
        }
        for i in 0..self.vlen(proto) as usize {
            let (name, ty) = (self.extra(proto, 2 * i), self.extra(proto, 2 * i + 1));
            if name == 0 && ty != 0 {
                return Err(self.finding(id, format!("Invalid arg#{}", i + 1)).into());
            }
        }
        self.pop_resolved(proto, 0);
        Ok(())
    }

    fn resolve_decl_tag(&mut self, id: u32) -> Step {
        let next = self.size_or_type(id);
        let k = match self.kind(next) {
            Some(k @ (FUNC | STRUCT | UNION | VAR | TYPEDEF)) => k,
            _ => return Err(self.finding(id, "Invalid type_id").into()),
        };
        if !self.sink(k) && !self.resolved(next) {
            return self.push(next);
        }
        let component = self.extra(id, 0) as i32;
        if component != -1 {
            let vlen = match k {
                VAR | TYPEDEF => return Err(self.finding(id, "Invalid component_idx").into()),
                STRUCT | UNION => self.vlen(next),
                _ => self.vlen(self.size_or_type(next)),
            };
            if component as u32 >= vlen as u32 {
                return Err(self.finding(id, "Invalid component_idx").into());
            }
        }
        self.pop_resolved(next, 0);
        Ok(())
    }

    /// The kernel's last look at a resolved type (`btf_resolve_valid`).
    fn resolve_valid(&self, id: u32) -> bool {
        if !self.resolved(id) {
            return false;
        }
        let (rid, rsize) = (
            self.resolved_ids[id as usize],
            self.resolved_sizes[id as usize],
        );
        match self.kind(id).unwrap_or(0) {
            STRUCT | UNION | DATASEC => rid == 0 && rsize == 0,
            DECL_TAG | FUNC => rid != 0 && rsize == 0,
            k if is_modifier(k) || k == PTR || k == VAR => self
                .kind(rid)
                .is_some_and(|rk| !is_modifier(rk) && rk != VAR && rk != DATASEC),
            ARRAY => match self.id_size(self.extra(id, 0)) {
                Some((e, size)) => {
                    !is_modifier(self.kind(e).unwrap_or(0))
                        && self.extra(id, 2).wrapping_mul(size) == rsize
                }
                None => false,
            },
            _ => false,
        }
    }

    // --- member placement -----------------------------------------------------------------

    fn check_member(&self, s: u32, i: usize, m_type: u32, off: u32) -> Step {
        let bad = |rule: &str| Err(Stop::Rule(self.finding(s, format!("member #{i}: {rule}"))));
        let struct_size = self.size_or_type(s);
        let mut m_type = m_type;
        let mut k = self.kind(m_type).unwrap_or(0);
        if is_modifier(k) {
            match self.id_size(m_type) {
                Some((rid, _)) => {
                    m_type = rid;
                    k = self.kind(rid).unwrap_or(0);
                }
                None => return bad("Invalid member"),
            }
        }
        let kflag = self.kflag(s);
        let bitfield = off >> 24;
        // PTR, ARRAY, STRUCT/UNION and FLOAT members are never bitfields.
        if kflag && matches!(k, PTR | ARRAY | STRUCT | UNION | FLOAT) && bitfield != 0 {
            return bad("Invalid member bitfield_size");
        }
        let off = if kflag && matches!(k, PTR | ARRAY | STRUCT | UNION | FLOAT) {
            off & 0x00ff_ffff
        } else {
            off
        };
        let aligned = |size: u32| -> Step {
            if off % 8 != 0 {
                return bad("Member is not byte aligned");
            }
            if struct_size.wrapping_sub(off / 8) < size {
                return bad("Member exceeds struct_size");
            }
            Ok(())
        };
        match k {
            PTR => aligned(PTR_SIZE),
            STRUCT | UNION => aligned(self.size_or_type(m_type)),
            ARRAY => aligned(self.id_size(m_type).map_or(0, |(_, s)| s)),
            ENUM | ENUM64 if !kflag => aligned(self.size_or_type(m_type)),
            ENUM | ENUM64 => {
                let (bit_off, mut bits) = (off & 0x00ff_ffff, off >> 24);
                if bits == 0 {
                    if bit_off % 8 != 0 {
                        return bad("Member is not byte aligned");
                    }
                    bits = 32;
                } else if bits > 32 {
                    return bad("Invalid member bitfield_size");
                }
                if struct_size < (bit_off + bits).div_ceil(8) {
                    return bad("Member exceeds struct_size");
                }
                Ok(())
            }
            INT => {
                let data = self.extra(m_type, 0);
                let (int_bits, int_off) = (data & 0xff, (data >> 16) & 0xff);
                let (bit_off, bits) = if kflag {
                    if !self.int_regular(m_type) {
                        return bad("Invalid member base type");
                    }
                    let (bit_off, bits) = (off & 0x00ff_ffff, off >> 24);
                    if bits == 0 {
                        if bit_off % 8 != 0 {
                            return bad("Invalid member offset");
                        }
                        (bit_off, int_bits)
                    } else if bits > int_bits {
                        return bad("Invalid member bitfield_size");
                    } else {
                        (bit_off, bits)
                    }
                } else {
                    if u32::MAX - off < int_off {
                        return bad("bits_offset exceeds U32_MAX");
                    }
                    (off + int_off, int_bits)
                };
                let bytes = bit_off / 8;
                let copy_bits = bits + bit_off % 8;
                if copy_bits > 128 {
                    return bad("nr_copy_bits exceeds 128");
                }
                if struct_size < bytes || struct_size - bytes < copy_bits.div_ceil(8) {
                    return bad("Member exceeds struct_size");
                }
                Ok(())
            }
            FLOAT => {
                let size = self.size_or_type(m_type);
                let align_bits = size.min(PTR_SIZE) as u64 * 8;
                if align_bits == 0 || !(off as u64).is_multiple_of(align_bits) {
                    return bad("Member is not properly aligned");
                }
                if (off / 8) as u64 + size as u64 > struct_size as u64 {
                    return bad("Member exceeds struct_size");
                }
                Ok(())
            }
            _ => bad(if kflag {
                "Unsupported check_kflag_member"
            } else {
                "Unsupported check_member"
            }),
        }
    }

    // --- FUNC_PROTO and type tags ---------------------------------------------------------

    fn func_proto_check(&mut self, id: u32) -> Result<(), Finding> {
        let ret = self.size_or_type(id);
        if ret != 0 {
            let Some(k) = self.kind(ret).filter(|&k| !source_only(k)) else {
                return Err(self.finding(id, "Invalid return type"));
            };
            if needs_resolve(k) && !self.resolved(ret) {
                self.resolve(ret)?;
            }
            if self.id_size(ret).is_none() {
                return Err(self.finding(id, "Invalid return type"));
            }
        }
        let mut n = self.vlen(id) as usize;
        if n == 0 {
            return Ok(());
        }
        // A last argument of type void is a vararg, and has no name.
        if self.extra(id, 2 * (n - 1) + 1) == 0 {
            if self.extra(id, 2 * (n - 1)) != 0 {
                return Err(self.finding(id, format!("Invalid arg#{n}")));
            }
            n -= 1;
        }
        for i in 0..n {
            let (name, ty) = (self.extra(id, 2 * i), self.extra(id, 2 * i + 1));
            let rule = format!("Invalid arg#{}", i + 1);
            let Some(k) = self.kind(ty).filter(|&k| !source_only(k)) else {
                return Err(self.finding(id, rule));
            };
            if name != 0 && (!self.name_offset_valid(name) || !self.identifier(name)) {
                return Err(self.finding(id, rule));
            }
            if needs_resolve(k) && !self.resolved(ty) {
                self.resolve(ty)?;
            }
            if self.id_size(ty).is_none() {
                return Err(self.finding(id, rule));
            }
        }
        Ok(())
    }

    /// Type tags come first in a modifier chain, and chains end within 32 steps.
    pub(super) fn check_type_tags(&self) -> Result<(), Finding> {
        let mut good = 0u32;
        for id in 1..self.count() {
            if !is_modifier(self.kind(id).unwrap_or(0)) {
                continue;
            }
            let mut in_tags = self.kind(id) == Some(TYPE_TAG);
            let (mut cur, mut limit) = (id, 32);
            while let Some(k) = self.kind(cur).filter(|&k| is_modifier(k)) {
                if limit == 0 {
                    return Err(self.finding(id, "Max chain length or cycle detected"));
                }
                limit -= 1;
                if k == TYPE_TAG {
                    if !in_tags {
                        return Err(self.finding(id, "Type tags don't precede modifiers"));
                    }
                } else {
                    in_tags = false;
                }
                if cur <= good {
                    break;
                }
                cur = self.size_or_type(cur);
                if self.kind(cur).is_none() {
                    return Err(self.finding(id, "Invalid type_id"));
                }
            }
            good = id;
        }
        Ok(())
    }
}

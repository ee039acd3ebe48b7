//! Any bytes, as a legacy object, a CO-RE object, raw BTF (our reader and the kernel's
//! rules) and BTF.ext: the verifier must report problems, never panic or hang.
#![no_main]

use kc_verify::btf::{parse_ext, Btf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kc_verify::verify("rkc_fuzz.6.1.o", data);
    let _ = kc_verify::verify("fuzz.bpf.o", data);
    let _ = kc_verify::btf_kernel::check(data);
    if let Ok(btf) = Btf::parse(data) {
        for t in &btf.types {
            let _ = btf.name(t);
        }
        let _ = parse_ext(data, &btf);
    }
});

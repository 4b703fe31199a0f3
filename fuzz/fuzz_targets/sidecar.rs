#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sidx_fuzz::sidecar(data));

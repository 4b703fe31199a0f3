#![no_main]
libfuzzer_sys::fuzz_target!(|input: sidx_fuzz::IndexOpenInput| sidx_fuzz::index_open(input));

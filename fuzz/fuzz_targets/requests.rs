#![no_main]
libfuzzer_sys::fuzz_target!(|input: sidx_fuzz::RequestsInput| sidx_fuzz::requests(input));

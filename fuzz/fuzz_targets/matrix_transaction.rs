#![no_main]
//! See `causeway_matrix::fuzzing::transaction`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_matrix::fuzzing::transaction(data));

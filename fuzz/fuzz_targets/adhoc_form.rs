#![no_main]
//! See `causeway::fuzzing::adhoc_form`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway::fuzzing::adhoc_form(data));

#![no_main]
//! See `causeway::fuzzing::addresses`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway::fuzzing::addresses(data));

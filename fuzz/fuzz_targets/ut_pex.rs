#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| btt::fuzz::ut_pex(data));

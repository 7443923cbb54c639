//! Parses arbitrary text as an RN: it must never panic, and an accepted RN prints back as given.
#![no_main]

use korm::Rn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rn) = s.parse::<Rn>() {
        assert_eq!(rn.to_string(), s, "an rn prints back byte-identical");
        let again: Rn = rn.as_str().parse().expect("a printed rn parses again");
        assert_eq!(again, rn);
        assert_eq!(again.segments(), rn.segments());
        assert_eq!(again.form(), rn.form());
    }
});

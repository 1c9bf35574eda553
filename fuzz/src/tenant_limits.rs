//! Per-tenant data-plane limits files (TOML, `conduit dev --limits`)
//! through `ServingLimits::from_toml`.
//!
//! Input format: the file's bytes.
//!
//! Checks: no panic; a refusal is one line; accepted limits are all above
//! zero, written out again they read back equal, and what they derive (the
//! sandbox memory cap, the session byte budget) is the configured amount,
//! saturated rather than wrapped when it does not fit.

use arbitrary::{Result, Unstructured};
use conduit_runner::{ServingLimits, TenantServing};

/// Tokens for mutations.
pub const DICTIONARY: &[&[u8]] = &[
    b"[default]\n",
    b"[tenants.acme]\n",
    b"[tenants.\"a b\"]\n",
    b"max_concurrent_requests = ",
    b"sandbox_memory_mib = ",
    b"sandbox_deadline_ms = ",
    b"request_deadline_ms = ",
    b"max_sessions = ",
    b"session_values_mib = ",
    b"session_lease_ms = ",
    b"17592186044416",
    b"18446744073709551615",
    b"9223372036854775807",
    b"4294967296",
    b"0x10",
    b"1_000",
];

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // A limits file is read as UTF-8 text first.
        return;
    };
    let limits = match ServingLimits::from_toml(text) {
        Ok(l) => l,
        Err(m) => {
            assert!(!m.contains('\n'), "a limits error of several lines: {m:?}");
            return;
        }
    };
    for l in std::iter::once(&limits.default).chain(limits.tenants.values()) {
        check(l);
    }
    for (name, l) in &limits.tenants {
        assert_eq!(&limits.of(name), l);
    }
    let written = write(&limits);
    let back = ServingLimits::from_toml(&written)
        .unwrap_or_else(|e| panic!("limits written out do not read back: {e}\n{written}"));
    assert_eq!(back, limits, "limits change when written out:\n{written}");
}

fn check(l: &TenantServing) {
    assert!(l.max_concurrent_requests > 0 && l.max_sessions > 0);
    assert!(l.sandbox_memory_mib > 0 && l.sandbox_deadline_ms > 0);
    assert!(l.request_deadline_ms > 0 && l.session_values_mib > 0 && l.session_lease_ms > 0);
    let memory = l.sandbox().memory_bytes as u128;
    let wanted = (u128::from(l.sandbox_memory_mib) << 20).min(usize::MAX as u128);
    assert_eq!(
        memory, wanted,
        "sandbox_memory_mib = {} gives a memory cap of {memory} bytes",
        l.sandbox_memory_mib
    );
    let budget = u128::from(l.session_values_bytes());
    let wanted = (u128::from(l.session_values_mib) << 20).min(u64::MAX as u128);
    assert_eq!(
        budget, wanted,
        "session_values_mib = {}",
        l.session_values_mib
    );
    assert_eq!(
        l.request_deadline().as_millis(),
        u128::from(l.request_deadline_ms)
    );
}

/// Limits as a TOML file.
pub fn write(limits: &ServingLimits) -> String {
    let mut out = String::from("[default]\n");
    table(&mut out, &limits.default);
    let mut names: Vec<&String> = limits.tenants.keys().collect();
    names.sort();
    for name in names {
        out.push_str(&format!(
            "\n[tenants.{}]\n",
            crate::generators::toml_string(name)
        ));
        table(&mut out, &limits.tenants[name]);
    }
    out
}

fn table(out: &mut String, l: &TenantServing) {
    let TenantServing {
        max_concurrent_requests,
        sandbox_memory_mib,
        sandbox_deadline_ms,
        request_deadline_ms,
        max_sessions,
        session_values_mib,
        session_lease_ms,
    } = l;
    out.push_str(&format!(
        "max_concurrent_requests = {max_concurrent_requests}\nsandbox_memory_mib = \
         {sandbox_memory_mib}\nsandbox_deadline_ms = {sandbox_deadline_ms}\nrequest_deadline_ms = \
         {request_deadline_ms}\nmax_sessions = {max_sessions}\nsession_values_mib = \
         {session_values_mib}\nsession_lease_ms = {session_lease_ms}\n"
    ));
}

/// A structured limits file: a default table and tenants, with values of
/// every size (zero and the edges of `u32`, `i64` and `u64` among them).
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    const KEYS: &[&str] = &[
        "max_concurrent_requests",
        "sandbox_memory_mib",
        "sandbox_deadline_ms",
        "request_deadline_ms",
        "max_sessions",
        "session_values_mib",
        "session_lease_ms",
        "max_tenants",
    ];
    let mut out = String::new();
    let tables = u.int_in_range(1..=3)?;
    for i in 0..tables {
        if i == 0 && u.ratio(3, 4)? {
            out.push_str("[default]\n");
        } else {
            let name =
                crate::generators::toml_string(u.choose(&["acme", "default", "a b", "", "é"])?);
            out.push_str(&format!("[tenants.{name}]\n"));
        }
        for _ in 0..u.int_in_range(0..=4)? {
            let value = match u.int_in_range(0..=5u8)? {
                0 => u.arbitrary::<u64>()?.to_string(),
                1 => (*u.choose(&[
                    "0",
                    "-1",
                    "4294967296",
                    "17592186044416",
                    "17592186044417",
                    "9223372036854775807",
                    "\"64\"",
                    "1.5",
                ])?)
                .to_string(),
                _ => u.int_in_range(1..=100_000u64)?.to_string(),
            };
            out.push_str(&format!("{} = {value}\n", u.choose(KEYS)?));
        }
    }
    Ok(out.into_bytes())
}

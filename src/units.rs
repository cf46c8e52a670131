//! Formatting of quantities for people (the library's reports and the CLI's tables).

/// Byte counts in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A span of seconds for people: `3d 4h`, `2h 5m`, `7m`; negative spans are "in the future".
pub fn human_duration(seconds: i64) -> String {
    if seconds < 0 {
        return "in the future".into();
    }
    let mins = seconds / 60;
    let (days, hours, minutes) = (mins / 1440, mins / 60 % 24, mins % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(super::human_duration(3 * 86400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(super::human_duration(-1), "in the future");
    }
}

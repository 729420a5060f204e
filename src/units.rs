//! Quantities in words people read: the one size formatter behind HTTP
//! refusals, pages and the command line's tables.

/// `900 bytes`, `1.5 MiB`, `512 MiB`: binary units, one decimal when it
/// is not zero.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_the_same_everywhere() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_size(u64::MAX), "16777216 TiB");
    }
}

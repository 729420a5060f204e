//! Media types for attachments, guessed from the file name.

/// A media type guessed from a file name's extension; the name stays
/// untrusted and this only helps the maintainer's tools.
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "py" => "text/x-python",
        "c" | "h" => "text/x-c",
        "rs" => "text/x-rust",
        "sh" => "text/x-shellscript",
        "js" => "text/javascript",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "eml" => "message/rfc822",
        "pcap" => "application/vnd.tcpdump.pcap",
        _ => "application/octet-stream",
    }
}

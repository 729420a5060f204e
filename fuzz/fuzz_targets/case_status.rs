//! A case status as the intake receives it (`PUT …/status`, any bytes from
//! a token holder) and as retention and `/metrics` read it from the store:
//! an error, never a panic; what verifies must be for the report asked
//! about and name only event names; what parses survives its own JSON.
#![no_main]

use std::sync::OnceLock;

use embargo::case::status::{CaseStatus, read_stored, verify};
use embargo::id::ReportId;
use embargo::store::is_event_name;
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::Cert;
use sequoia_openpgp::cert::CertBuilder;

fn fixture() -> &'static (ReportId, Cert) {
    static FIXTURE: OnceLock<(ReportId, Cert)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let id: ReportId = "K7Q3M-2XDA9-TF4BC-1ZP0R".parse().expect("a report ID");
        let (cert, _) = CertBuilder::general_purpose(Some("fuzz@example.org"))
            .generate()
            .expect("a certificate");
        (id, cert.strip_secret_key_material())
    })
}

fuzz_target!(|data: &[u8]| {
    let (id, cert) = fixture();
    if let Ok(status) = verify(data, std::slice::from_ref(cert), id) {
        assert!(&status.report == id, "a status for another report verified");
        assert!(status.events.iter().all(|n| is_event_name(n)));
    }
    if let Some(status) = read_stored(data, id) {
        assert!(&status.report == id, "a status for another report was read");
    }
    if let Ok(status) = CaseStatus::from_json(data, id) {
        let json = status.to_json();
        let again = CaseStatus::from_json(&json, id).expect("a serialized status parses");
        assert!(again == status, "a status changed through its own JSON");
    }
});

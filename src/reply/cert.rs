//! The reply certificate: an OpenPGP certificate whose secret keys follow
//! from the code alone (through [`super::derive`]), so the intake can make
//! it again for one request and forget it. Ed25519 primary (certify,
//! sign), Cv25519 subkey (encrypt), both created at a fixed time, so the
//! same seed always gives the same fingerprint.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::packet::key::{Key4, PrimaryRole, SecretParts, SubordinateRole};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{Key, UserID};
use openpgp::types::{Features, HashAlgorithm, KeyFlags, SignatureType, SymmetricAlgorithm};
use openpgp::{Cert, Packet};
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// When every reply certificate's keys were "created": 2020-01-01T00:00:00Z.
pub fn creation_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_577_836_800)
}

/// The user ID every reply certificate carries (gpg imports no
/// certificate without one).
pub const USER_ID: &str = "embargo reply certificate";

/// The reply certificate of `seed`, with its secret keys (keep it in
/// memory only; strip it with `strip_secret_key_material` to seal it).
pub fn reply_cert(seed: &[u8; 32]) -> openpgp::Result<Cert> {
    let part = |label: &[u8]| -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(label);
        h.update(seed);
        Zeroizing::new(h.finalize().into())
    };
    let ctime = creation_time();
    let primary: Key<SecretParts, PrimaryRole> =
        Key4::import_secret_ed25519(&*part(b"embargo reply sign v1"), ctime)?.into();
    let subkey: Key<SecretParts, SubordinateRole> = Key4::import_secret_cv25519(
        &*part(b"embargo reply encrypt v1"),
        HashAlgorithm::SHA256,
        SymmetricAlgorithm::AES128,
        ctime,
    )?
    .into();
    let mut signer = primary.clone().into_keypair()?;
    let cert = Cert::try_from(vec![Packet::from(primary)])?;
    let uid = UserID::from(USER_ID);
    let uid_sig = uid.bind(
        &mut signer,
        &cert,
        // Without preferences gpg falls back to 3DES, which readers refuse.
        SignatureBuilder::new(SignatureType::PositiveCertification)
            .set_signature_creation_time(ctime)?
            .set_key_flags(KeyFlags::empty().set_certification().set_signing())?
            .set_preferred_symmetric_algorithms(vec![
                SymmetricAlgorithm::AES256,
                SymmetricAlgorithm::AES128,
            ])?
            .set_preferred_hash_algorithms(vec![HashAlgorithm::SHA512, HashAlgorithm::SHA256])?
            .set_features(Features::empty().set_seipdv1())?,
    )?;
    let sub_sig = subkey.bind(
        &mut signer,
        &cert,
        SignatureBuilder::new(SignatureType::SubkeyBinding)
            .set_signature_creation_time(ctime)?
            .set_key_flags(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
            )?,
    )?;
    let (cert, _) = cert.insert_packets(vec![
        Packet::from(uid),
        uid_sig.into(),
        Packet::from(subkey),
        sub_sig.into(),
    ])?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::policy::StandardPolicy;

    #[test]
    fn the_same_seed_gives_the_same_usable_certificate() {
        let (a, b) = (reply_cert(&[1; 32]).unwrap(), reply_cert(&[1; 32]).unwrap());
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), reply_cert(&[2; 32]).unwrap().fingerprint());
        let policy = StandardPolicy::new();
        let valid = a
            .with_policy(&policy, None)
            .expect("valid under the standard policy");
        assert_eq!(valid.keys().for_storage_encryption().count(), 1);
        assert_eq!(valid.keys().for_signing().count(), 1);
        assert!(a.is_tsk());
        assert!(!a.clone().strip_secret_key_material().is_tsk());
    }
}

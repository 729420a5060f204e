//! The reply certificate (groundwork for the reporter channel): stock gpg
//! imports it and encrypts to it, and the certificate made again from the
//! same code and salt alone decrypts what gpg wrote.

mod common;

use embargo::reply::{ReplyCode, Salt, cert, derive};
use embargo::seal::{Opener, SecretSource};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;

#[test]
fn gpg_encrypts_to_a_reply_certificate_that_the_code_alone_opens_again() {
    let state = tempfile::tempdir().unwrap();
    let salt = Salt::load_or_create(state.path()).unwrap();
    let code = ReplyCode::generate();
    let shown = code.display().to_string();
    let made = cert::reply_cert(&derive::derive(&code, &salt).seed).unwrap();
    let public = made
        .clone()
        .strip_secret_key_material()
        .armored()
        .to_vec()
        .unwrap();

    let gpg = common::Gpg::new();
    gpg.import(&public);
    let maintainer = gpg.gen_key(
        "Maintainer <m@example.org>",
        common::GpgKeyType::Cv25519,
        "",
        "0",
    );
    let fpr = made.fingerprint().to_hex();
    let plain = state.path().join("reply.txt");
    std::fs::write(&plain, b"REPLY-CANARY we fixed it").unwrap();
    let sealed = state.path().join("reply.pgp");
    gpg.run(
        &[
            "--trust-model",
            "always",
            "--local-user",
            &maintainer,
            "--recipient",
            &fpr,
            "--output",
            sealed.to_str().unwrap(),
            "--sign",
            "--encrypt",
            plain.to_str().unwrap(),
        ],
        None,
    );

    // Later, from what the reporter typed and the salt only.
    let again = ReplyCode::parse(&shown.to_lowercase()).unwrap();
    let remade = cert::reply_cert(
        &derive::derive(&again, &Salt::load_or_create(state.path()).unwrap()).seed,
    )
    .unwrap();
    assert_eq!(remade.fingerprint(), made.fingerprint());
    let tsk = remade.as_tsk().armored().to_vec().unwrap();
    let opener = Opener::new(SecretSource::from_key_bytes(&tsk, None).unwrap(), None);
    let signer = sequoia_openpgp::Cert::from_bytes(&gpg.export_public(&maintainer)).unwrap();
    let file = std::fs::File::open(&sealed).unwrap();
    let (opened, by) = opener
        .open_signed("reply.pgp", file, 1 << 20, &[signer])
        .expect("the remade key opens gpg's message, signed by the maintainer");
    assert_eq!(opened.as_slice(), b"REPLY-CANARY we fixed it");
    assert_eq!(by.to_hex(), maintainer);
}

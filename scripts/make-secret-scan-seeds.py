#!/usr/bin/env python3
# Writes the secret-key seeds of fuzz/corpus-seeds/secret_scan/:
#   python3 scripts/make-secret-scan-seeds.py fuzz/corpus-seeds/secret_scan
# Secret-key-shaped packets whose key material is all zeros: they have the
# packet structure the scan must catch, but are no key anyone could use.
import base64, struct, sys, os
out = sys.argv[1]
def crc24(data):
    crc = 0xB704CE
    for b in data:
        crc ^= b << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000: crc ^= 0x1864CFB
    return crc & 0xFFFFFF
def armor(kind, data, comment):
    b64 = base64.b64encode(data).decode()
    lines = [b64[i:i+64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(struct.pack(">I", crc24(data))[1:]).decode()
    return (f"-----BEGIN PGP {kind}-----\nComment: {comment}\n\n" + "\n".join(lines) + f"\n={crc}\n-----END PGP {kind}-----\n").encode()
def packet(tag, body):
    assert len(body) < 192
    return bytes([0xC0 | tag, len(body)]) + body
EDDSA_OID = bytes([0x2B,0x06,0x01,0x04,0x01,0xDA,0x47,0x0F,0x01])
CV_OID = bytes([0x2B,0x06,0x01,0x04,0x01,0x97,0x55,0x01,0x05,0x01])
def key_body(algo, oid, extra=b""):
    point = b"\x40" + bytes(32)
    pub = b"\x04" + struct.pack(">I", 0x60000000) + bytes([algo, len(oid)]) + oid + struct.pack(">H", 263) + point + extra
    secret = b"\x00" + struct.pack(">H", 0) + struct.pack(">H", 0)   # s2k usage 0, empty MPI, checksum 0
    return pub + secret
uid = packet(13, b"embargo fuzz seed: zeroed key material, not a key")
primary = packet(5, key_body(22, EDDSA_OID))
sub = packet(7, key_body(18, CV_OID, b"\x03\x01\x08\x07"))
tsk = primary + uid + sub
note = "embargo test data: all key material is zero; not a usable key"
open(os.path.join(out, "secret-tsk.asc"), "wb").write(armor("PRIVATE KEY BLOCK", tsk, note))
open(os.path.join(out, "secret-lone-subkey.pgp"), "wb").write(sub)
open(os.path.join(out, "secret-tsk-with-garbage.pgp"), "wb").write(tsk + b"\x00garbage after the packets\xff\xfe" * 8)
public = open(os.path.join(out, "public-gpg-cv25519.asc"), "rb").read()
open(os.path.join(out, "secret-after-public.asc"), "wb").write(public + b"\n" + armor("PRIVATE KEY BLOCK", tsk, note))

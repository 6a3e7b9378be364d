#!/usr/bin/env python3
"""Test vectors for FreshBooks' webhook signature, made by Python's own json.dumps (what FreshBooks
signs): base64(HMAC-SHA256(verifier, json.dumps(dict(form fields in order)))).

The form body arrives as bytes; like Python's urllib.parse.parse_qsl (errors="replace"), invalid UTF-8
becomes U+FFFD before the dict is dumped. Run it again to regenerate webhook_vectors.json:
    python3 spec/vectors/webhook_vectors.py > spec/vectors/webhook_vectors.json
spec/webhook_spec.lua checks the client's signer against the file, and the sandbox's through real
deliveries; neither needs Python."""
import base64, hashlib, hmac, json
from urllib.parse import quote_from_bytes, parse_qsl

VERIFIER = "vErIfIeR-0123456789"

CASES = {
    "plain fields": [(b"name", b"invoice.create"), (b"object_id", b"12345"), (b"account_id", b"aBcD1")],
    "the verification delivery": [(b"name", b"callback.verify"), (b"verifier", b"a1b2c3")],
    "quotes, backslash, slash": [(b"note", b'say "hi" \\ and /')],
    "controls and DEL": [(b"c", b"\x01\x1f\t\n\r\x08\x0c\x7f")],
    "non-ASCII, BMP": [(b"city", "Montréal – Zürich ☃".encode())],
    "beyond the BMP": [(b"emoji", "😀𝄞".encode())],
    "invalid UTF-8": [(b"raw", b"\xff\xfe ok \xc3(")],
    "UTF-8 cut short, overlong, surrogate, past U+10FFFF": [(b"a", b"\xe2\x82("), (b"b", b"\xf0\x9f\x98("),
                                                           (b"c", b"\xc0\xaf"), (b"d", b"\xed\xa0\x80"),
                                                           (b"e", b"\xf4\x90\x80\x80"), (b"f", b"\x80\x80")],
    "a repeated name keeps its first place and last value": [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")],
    "empty value": [(b"empty", b"")],
}

out = []
for name, fields in CASES.items():
    body = "&".join(quote_from_bytes(k, safe="") + "=" + quote_from_bytes(v, safe="") for k, v in fields)
    message = json.dumps(dict(parse_qsl(body, keep_blank_values=True, errors="replace")))
    signature = base64.b64encode(hmac.new(VERIFIER.encode(), message.encode(), hashlib.sha256).digest()).decode()
    out.append({"case": name, "body": body, "message": message, "signature": signature})
print(json.dumps({"verifier": VERIFIER, "vectors": out}, indent=1))

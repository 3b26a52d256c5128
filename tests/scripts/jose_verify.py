#!/usr/bin/env python3
"""Independent check of a paotui license: verify a compact JWS with a stock JOSE library
(jwcrypto), given only the issuer's public JWK.

usage: jose_verify.py JWK_JSON_FILE TOKEN_FILE
Prints the verified payload (JSON) and exits 0, or prints the error and exits 1.
Install: pip install jwcrypto (tests/tests/licenses.rs does it into the build dir).
"""
import json
import sys

from jwcrypto import jwk, jws


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        key = jwk.JWK(**json.load(f))
    with open(sys.argv[2], encoding="utf-8") as f:
        token = f.read().strip()
    sig = jws.JWS()
    sig.deserialize(token)
    # Only EdDSA is acceptable for paotui licenses: refuse anything else.
    sig.verify(key, alg="EdDSA")
    header = sig.jose_header
    if header.get("typ") != "paotui-license+jws":
        print(f"unexpected typ {header.get('typ')!r}")
        return 1
    sys.stdout.write(sig.payload.decode("utf-8"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # the verdict is the exit code; the reason goes to stdout
        print(f"{type(e).__name__}: {e}")
        sys.exit(1)

#!/usr/bin/env python3
"""Prints a 10-minute HS256 token for client SUB, signed with the token secret in
$SMOKE_TOKEN_SECRET under key id $SMOKE_TOKEN_KID (registered for the smoke app with
`im-admin token-key add`). Standard library only: the pipeline's smoke step uses it."""
import base64, hashlib, hmac, json, os, sys, time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


if len(sys.argv) != 2:
    sys.exit("usage: mint-token.py SUB  (with SMOKE_TOKEN_KID and SMOKE_TOKEN_SECRET set)")
kid, secret = os.environ.get("SMOKE_TOKEN_KID"), os.environ.get("SMOKE_TOKEN_SECRET")
if not kid or not secret:
    sys.exit("mint-token.py: SMOKE_TOKEN_KID and SMOKE_TOKEN_SECRET must be set")
header = b64(json.dumps({"typ": "JWT", "alg": "HS256", "kid": kid}).encode())
claims = b64(json.dumps({"sub": sys.argv[1], "exp": int(time.time()) + 600}).encode())
signed = f"{header}.{claims}".encode()
signature = b64(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
print(f"{header}.{claims}.{signature}")

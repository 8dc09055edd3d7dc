"""An upstream MCP server (official Python SDK) over Streamable HTTP on https.

Usage: python tls_upstream_server.py <port> <folder>
Makes a throwaway certificate authority and a certificate for 127.0.0.1 signed by
it (the `cryptography` package, which the SDK depends on), writes the CA's
certificate to <folder>/ca.pem, and serves https://127.0.0.1:<port>/mcp with
one tool, `shout`, whose answer is its `text` in capitals.
"""
import datetime
import ipaddress
import os
import sys

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.server.mcpserver import MCPServer

PORT = int(sys.argv[1])
FOLDER = sys.argv[2]

server = MCPServer("tls-upstream")


@server.tool()
async def shout(text: str) -> str:
    """Answers with the text in capitals."""
    return text.upper()


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(subject, issuer, public_key, signing_key, is_ca: bool):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name("test CA"), name("test CA"), ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(name("127.0.0.1"), ca.subject, key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    write(os.path.join(FOLDER, "server.pem"), cert.public_bytes(pem))
    write(
        os.path.join(FOLDER, "server.key"),
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    # Written last: once it exists, the key pair is in place.
    write(os.path.join(FOLDER, "ca.pem.tmp"), ca.public_bytes(pem))
    os.rename(os.path.join(FOLDER, "ca.pem.tmp"), os.path.join(FOLDER, "ca.pem"))
    uvicorn.run(
        server.streamable_http_app(),
        host="127.0.0.1",
        port=PORT,
        log_level="warning",
        ssl_certfile=os.path.join(FOLDER, "server.pem"),
        ssl_keyfile=os.path.join(FOLDER, "server.key"),
    )

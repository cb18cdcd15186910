"""certgen: certificates with exactly the property a test needs, made at run time.

`tls-sidecar certs init` (harness.make_pki) writes a complete throwaway PKI but discards its
CA key, so a test that needs more than those four files (a given serial or subject, an
expired or short-lived certificate, an encrypted key, a revocation list) issues them here
with Python's `cryptography` (Debian's python3-cryptography; tests/run.sh installs it).
Nothing is committed: every key lives in the test's temporary directory.

    ca = certgen.Authority("Test CA")
    leaf = ca.issue("node1", serial=101)
    leaf.write(tmp_path / "node1.pem")              # certificate then key, as mongod's PEMKeyFile
    ca.write_certificate(tmp_path / "ca.pem")
    ca.write_crl(tmp_path / "crl.pem", revoked=[101])
"""

import datetime
import hashlib
import ipaddress
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _name(common_name, organization=None):
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _san(hosts):
    entries = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write(path, data):
    path = pathlib.Path(path)
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


class Leaf:
    """An issued certificate and its key."""

    def __init__(self, certificate, key):
        self.certificate = certificate
        self.key = key

    @property
    def serial(self):
        return self.certificate.serial_number

    def certificate_pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password=None):
        encryption = (serialization.BestAvailableEncryption(password.encode())
                      if password else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, encryption)

    def sha1_hex(self):
        """The thumbprint `thumbprint=` selectors match: SHA-1 of the DER certificate."""
        return hashlib.sha1(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    def write(self, path, password=None):
        """Writes certificate then key (encrypted with `password` when given) to `path`,
        replacing it in one rename so that a reading process never sees half a file."""
        path = pathlib.Path(path)
        temporary = path.with_name(path.name + ".tmp")
        _write(temporary, self.certificate_pem() + self.key_pem(password))
        os.replace(temporary, path)
        return path


class Authority:
    """A self-signed CA that issues leaves and revocation lists."""

    def __init__(self, common_name="tls-sidecar e2e CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        name = _name(common_name)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))

    def issue(self, common_name, serial=None, organization=None, hosts=LOCAL_NAMES,
              valid_from=datetime.timedelta(hours=-1), lifetime=datetime.timedelta(days=365),
              key=None):
        """A leaf for serverAuth and clientAuth (as mongod member certificates are), with
        SANs `hosts`. Expired: valid_from=-2 days, lifetime=1 day. `key` reuses a key."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        not_before = _now() + valid_from
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False))
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        return Leaf(builder.sign(self.key, hashes.SHA256()), key)

    def certificate_pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_certificate(self, path):
        return _write(path, self.certificate_pem())

    def write_crl(self, path, revoked=()):
        """A CRL signed by this CA revoking the serials `revoked`, valid for a month."""
        now = _now()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.certificate.subject)
                   .last_update(now - datetime.timedelta(hours=1))
                   .next_update(now + datetime.timedelta(days=30)))
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=30)).build())
        crl = builder.sign(self.key, hashes.SHA256())
        return _write(path, crl.public_bytes(serialization.Encoding.PEM))


def serial_of_der(der):
    """The serial of a DER certificate, e.g. from SSLSocket.getpeercert(binary_form=True)."""
    return x509.load_der_x509_certificate(der).serial_number

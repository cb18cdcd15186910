#!/bin/sh
# Makes the OCSP fixtures of tests/certs/ocsp_*_test.cc with Debian's openssl: a CA, a
# leaf that names a responder, a revoked leaf, a delegated responder (OCSPSigning EKU), a
# responder without the EKU and one issued by another CA; then requests and responses
# made by `openssl ocsp` acting as the responder over an index file. Certificates are valid
# for 100 years; responses carry nextUpdate 100 years out except stale_*.der (1 minute).
# The tests pass their own clock, so the fixtures never expire. Run from this folder.
set -eu
days=36500
ec() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"; }
ext() { printf '%s\n' "$@" > ext.cnf; }

ec ca
openssl req -new -x509 -key ca.key -out ca.pem -days $days -subj "/CN=OCSP Test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign"
ec other_ca
openssl req -new -x509 -key other_ca.key -out other_ca.pem -days $days -subj "/CN=Other CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign"

leaf() {  # name serial issuer extensions...
  name=$1 serial=$2 issuer=$3; shift 3
  ec "$name"
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
  ext "$@"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -set_serial "$serial" \
    -days $days -extfile ext.cnf -out "$name.pem"
  rm "$name.csr"
}
leaf good 0x1001 ca "authorityInfoAccess=OCSP;URI:http://127.0.0.1:1/" \
  "extendedKeyUsage=serverAuth,clientAuth" "tlsfeature=status_request"
leaf revoked 0x1002 ca "authorityInfoAccess=OCSP;URI:http://127.0.0.1:1/"
leaf unlisted 0x1003 ca "authorityInfoAccess=OCSP;URI:http://127.0.0.1:1/"
leaf responder 0x2001 ca "extendedKeyUsage=OCSPSigning"
leaf noeku_responder 0x2002 ca "keyUsage=digitalSignature"
leaf rogue_responder 0x2003 other_ca "extendedKeyUsage=OCSPSigning"
rm ext.cnf

# index.txt: V(alid) good, R(evoked) revoked; `unlisted` is absent, so its status is unknown.
exp=$(date -u -d "+50 years" +%y%m%d%H%M%SZ)
rev=$(date -u -d "-1 day" +%y%m%d%H%M%SZ)
printf 'V\t%s\t\t1001\tunknown\t/CN=good\n' "$exp" > index.txt
printf 'R\t%s\t%s,keyCompromise\t1002\tunknown\t/CN=revoked\n' "$exp" "$rev" >> index.txt

req() { openssl ocsp -issuer ca.pem -cert "$1.pem" -reqout "$2" ${3:-} 2>/dev/null; }
respond() {  # request output signer [more options]
  r=$1 out=$2 signer=$3; shift 3
  openssl ocsp -index index.txt -CA ca.pem -rsigner "$signer.pem" -rkey "$signer.key" \
    -reqin "$r" -respout "$out" "$@" 2>/dev/null
}
req good good_req.der -no_nonce
req revoked revoked_req.der -no_nonce
req unlisted unlisted_req.der -no_nonce
req good good_nonce_req.der -nonce
respond good_req.der good_by_ca.der ca -ndays $days
respond good_req.der good_by_responder.der responder -ndays $days
respond good_req.der good_by_responder_id_key.der responder -ndays $days -resp_key_id
respond good_req.der good_by_noeku.der noeku_responder -ndays $days
respond good_req.der good_by_rogue.der rogue_responder -ndays $days
respond good_req.der good_no_certs.der responder -ndays $days -resp_no_certs
respond good_nonce_req.der good_nonce.der ca -ndays $days
respond revoked_req.der revoked.der ca -ndays $days
respond unlisted_req.der unknown.der ca -ndays $days
respond good_req.der stale_good.der ca -nmin 1
rm -f ./*.key.srl ./*.srl index.txt.attr index.txt.old

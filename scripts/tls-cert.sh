#!/usr/bin/env bash
# Makes a throwaway test CA and a server certificate it signed, for TLS runs on one host:
#   scripts/tls-cert.sh DIR [DAYS]
# writes DIR/ca.pem (trust it: loadgen --tls-ca, Python's ssl, Chromium), DIR/cert.pem (the
# server's leaf then the CA: a chain, as --tls-cert takes it), DIR/key.pem (PKCS#8, ECDSA
# P-256) for the names localhost, 127.0.0.1 and ::1, valid DAYS days (default 30). Never use
# them beyond tests: the CA key (DIR/ca.key) sits beside them.
set -euo pipefail
dir=${1:?usage: scripts/tls-cert.sh DIR [DAYS]}
days=${2:-30}
command -v openssl >/dev/null || { echo "tls-cert.sh: openssl not found (apt-get install -y openssl)" >&2; exit 2; }
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=ringcast test CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout key.pem -out leaf.csr 2>/dev/null
cat > leaf.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile leaf.ext -out leaf.pem 2>/dev/null
cat leaf.pem ca.pem > cert.pem
rm -f leaf.csr leaf.ext ca.srl
echo "tls-cert.sh: $PWD/{ca.pem,cert.pem,key.pem} for localhost, 127.0.0.1, ::1 ($days days)"

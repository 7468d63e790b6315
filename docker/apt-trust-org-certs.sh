#!/bin/sh
# Let apt trust the organisation CA certificates dropped into docker/certs/ before the
# ca-certificates package (and so the system bundle) exists in the image. Only needed when the
# Debian mirror is reached over HTTPS through a TLS-intercepting proxy; harmless otherwise.
# The Dockerfile deletes the apt setting again once update-ca-certificates has run.
set -eu
dir=/usr/local/share/ca-certificates/k8snet-org
bundle=/etc/ssl/k8snet-org-bundle.pem
found=0
mkdir -p /etc/ssl
: >"$bundle"
for cert in "$dir"/*.crt "$dir"/*.pem; do
    [ -f "$cert" ] || continue
    cat "$cert" >>"$bundle"
    found=1
done
# update-ca-certificates only reads *.crt: give any .pem a .crt twin.
for cert in "$dir"/*.pem; do
    [ -f "$cert" ] && cp "$cert" "${cert%.pem}.crt"
done
if [ "$found" = 1 ]; then
    echo "Acquire::https::CAInfo \"$bundle\";" >/etc/apt/apt.conf.d/99k8snet-org-certs
    echo "apt-trust-org-certs: trusting certificates from docker/certs/"
else
    rm -f "$bundle"
fi

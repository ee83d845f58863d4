//! What the agent's own HTTP clients (OTLP export, the Kubernetes API)
//! share.

/// `builder` trusting only the certificate authorities in `pem` (a private
/// CA, the cluster's), not the system's.
pub fn trusting_only(
    mut builder: reqwest::ClientBuilder,
    pem: &[u8],
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    builder = builder.tls_built_in_root_certs(false);
    for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
        builder = builder.add_root_certificate(certificate);
    }
    Ok(builder)
}
